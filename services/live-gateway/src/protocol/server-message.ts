import type {
  AuthOkMessage,
  ErrorCode,
  ErrorMessage,
  PongMessage,
  Uid,
  UnsubscribedMessage,
  UnsubscribeReason,
} from '@pitwall/live-protocol';
import { ERRORS } from '@pitwall/live-protocol';

// The gateway's serialisation of server messages (types: @pitwall/live-protocol). Each builder returns
// the finished JSON text, so a frame is serialised once whatever the number of recipients.

function withUid<T extends { uid?: Uid }>(body: T, uid: Uid | undefined): string {
  if (uid !== undefined) body.uid = uid;
  return JSON.stringify(body);
}

export function authOkMessage(expiresAtMs: number, uid?: Uid): string {
  return withUid<AuthOkMessage>({ type: 'auth', status: 'ok', expires_at: expiresAtMs }, uid);
}

export interface ErrorDetails {
  uid?: Uid | undefined;
  eventId?: number | undefined;
  retryAfterMs?: number | undefined;
  /** `going_away`: the window the client spreads its reconnect over, ms. */
  reconnectWithinMs?: number | undefined;
}

/** The retry hint of a retryable error when whoever refused had no better estimate, ms. */
export const DEFAULT_RETRY_AFTER_MS = 1_000;

/** An `error`; a retryable one (`authorization_unavailable`, `rate_limited`) always carries `retry_after_ms`. */
export function errorMessage(code: ErrorCode, message: string, details: ErrorDetails = {}): string {
  const body: ErrorMessage = { type: 'error', code, message };
  if (details.eventId !== undefined) body.event_id = details.eventId;
  const retryAfterMs = details.retryAfterMs ?? (ERRORS[code].retryable ? DEFAULT_RETRY_AFTER_MS : undefined);
  if (retryAfterMs !== undefined) body.retry_after_ms = Math.max(0, Math.ceil(retryAfterMs));
  if (details.reconnectWithinMs !== undefined) body.reconnect_within_ms = Math.max(0, Math.ceil(details.reconnectWithinMs));
  return withUid(body, details.uid);
}

export function unsubscribedMessage(eventId: number, reason: UnsubscribeReason, uid?: Uid): string {
  return withUid<UnsubscribedMessage>({ type: 'unsubscribed', event_id: eventId, reason }, uid);
}

export function pongMessage(uid?: Uid): string {
  return withUid<PongMessage>({ type: 'pong' }, uid);
}

/** What a `subscribed` reply carries besides its snapshot (SubscribedMessage). */
export interface SubscribedExtras {
  /** Only when the subscribe had `since`. */
  recovered?: boolean | undefined;
  /** Only when the subscribe had `history_seconds`: finished position JSON texts. */
  history?: readonly string[] | undefined;
  cursor?: string | undefined;
}

/** `subscribed` with its snapshot; `positions` are finished position JSON texts (WirePosition). */
export function subscribedMessage(eventId: number, positions: readonly string[], uid?: Uid, extras: SubscribedExtras = {}): string {
  const uidPart = uid === undefined ? '' : `,"uid":${JSON.stringify(uid)}`;
  const recoveredPart = extras.recovered === undefined ? '' : `,"recovered":${extras.recovered}`;
  const cursorPart = extras.cursor === undefined ? '' : `,"cursor":${JSON.stringify(extras.cursor)}`;
  const historyPart = extras.history === undefined ? '' : `,"history":[${extras.history.join(',')}]`;
  return `{"type":"subscribed","event_id":${eventId}${uidPart}${recoveredPart}${cursorPart},"snapshot":[${positions.join(',')}]${historyPart}}`;
}

/**
 * One `positions` frame of an event; `positions` are finished position JSON texts (WirePosition). The
 * cursor is made by the gateway (history/cursor.ts): JSON-safe characters only.
 */
export function positionsMessage(eventId: number, positions: readonly string[], cursor: string): string {
  return `{"type":"positions","event_id":${eventId},"cursor":"${cursor}","positions":[${positions.join(',')}]}`;
}
