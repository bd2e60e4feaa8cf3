import type { Uid } from './client-message.js';

// Replies and pushes to the client (CONTRACT.md). Each builder returns the finished JSON text, so a
// frame is serialised once whatever the number of recipients.

export type ErrorCode =
  | 'unauthenticated'
  | 'token_expired'
  | 'forbidden'
  | 'not_found'
  | 'bad_request'
  | 'authorization_unavailable'
  | 'rate_limited'
  | 'internal';

export type UnsubscribeReason = 'client' | 'forbidden';

function withUid(body: Record<string, unknown>, uid: Uid | undefined): string {
  return JSON.stringify(uid === undefined ? body : { ...body, uid });
}

export function authOkMessage(expiresAtMs: number, uid?: Uid): string {
  return withUid({ type: 'auth', status: 'ok', expires_at: expiresAtMs }, uid);
}

export function errorMessage(code: ErrorCode, message: string, uid?: Uid, eventId?: number): string {
  return withUid(eventId === undefined ? { type: 'error', code, message } : { type: 'error', code, message, event_id: eventId }, uid);
}

export function unsubscribedMessage(eventId: number, reason: UnsubscribeReason, uid?: Uid): string {
  return withUid({ type: 'unsubscribed', event_id: eventId, reason }, uid);
}

export function pongMessage(uid?: Uid): string {
  return withUid({ type: 'pong' }, uid);
}

/** `subscribed` with its snapshot; `positions` are finished position JSON texts. */
export function subscribedMessage(eventId: number, positions: readonly string[], uid?: Uid): string {
  const uidPart = uid === undefined ? '' : `,"uid":${JSON.stringify(uid)}`;
  return `{"type":"subscribed","event_id":${eventId}${uidPart},"snapshot":[${positions.join(',')}]}`;
}

/** One `positions` frame of an event; `positions` are finished position JSON texts. */
export function positionsMessage(eventId: number, positions: readonly string[]): string {
  return `{"type":"positions","event_id":${eventId},"positions":[${positions.join(',')}]}`;
}
