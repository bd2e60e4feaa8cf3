// The live gateway's WebSocket protocol (CONTRACT.md, path /live) as a viewer speaks it. Shared by the
// k6 scripts and the Node harness, so it imports nothing and uses no runtime-specific API.

/** A position as the gateway sends it; only what a viewer measures is read. */
export interface LivePosition {
  device_id: string;
  /** Device GNSS time, ms. */
  ts: number;
  /** When ingestion received it, ms: delivery latency is arrival minus this. */
  rx: number;
}

export type ServerFrame =
  | { type: 'auth'; status: string; expires_at: number | undefined; uid: string | undefined }
  | { type: 'subscribed'; event_id: number; snapshot: unknown[]; uid: string | undefined }
  | { type: 'positions'; event_id: number; positions: unknown[] }
  | { type: 'unsubscribed'; event_id: number; reason: string }
  | { type: 'error'; code: string; message: string; uid: string | undefined }
  | { type: 'pong' };

/** Close codes of the contract. */
export const CLOSE_CODE = {
  normal: 1000,
  goingAway: 1001,
  protocolViolation: 4400,
  unauthenticated: 4401,
  authTimeout: 4408,
} as const;

/** Error codes that ask the client to try the same request again a little later. */
export const RETRYABLE_ERROR_CODES: readonly string[] = ['authorization_unavailable', 'rate_limited'];

/** Error codes after which the server ends the session for the token (then closes with 4401). */
export const TOKEN_ERROR_CODES: readonly string[] = ['unauthenticated', 'token_expired'];

export function authMessage(accessToken: string): string {
  return JSON.stringify({ type: 'auth', access_token: accessToken });
}

export function subscribeMessage(eventId: number, uid: string): string {
  return JSON.stringify({ type: 'subscribe', event_id: eventId, uid });
}

export function unsubscribeMessage(eventId: number, uid: string): string {
  return JSON.stringify({ type: 'unsubscribe', event_id: eventId, uid });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** One server text frame, or undefined when it is not JSON or not a frame of the protocol. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  const eventId = typeof value.event_id === 'number' ? value.event_id : -1;
  switch (value.type) {
    case 'auth':
      return {
        type: 'auth',
        status: optionalString(value.status) ?? '',
        expires_at: typeof value.expires_at === 'number' ? value.expires_at : undefined,
        uid: optionalString(value.uid),
      };
    case 'subscribed':
      return Array.isArray(value.snapshot)
        ? { type: 'subscribed', event_id: eventId, snapshot: value.snapshot, uid: optionalString(value.uid) }
        : undefined;
    case 'positions':
      return Array.isArray(value.positions) ? { type: 'positions', event_id: eventId, positions: value.positions } : undefined;
    case 'unsubscribed':
      return { type: 'unsubscribed', event_id: eventId, reason: optionalString(value.reason) ?? '' };
    case 'error':
      return {
        type: 'error',
        code: optionalString(value.code) ?? '',
        message: optionalString(value.message) ?? '',
        uid: optionalString(value.uid),
      };
    case 'pong':
      return { type: 'pong' };
    default:
      return undefined;
  }
}

/** The `rx` of a position from a frame, or undefined when the element is not a position. */
export function receivedAtOf(position: unknown): number | undefined {
  return isRecord(position) && typeof position.rx === 'number' ? position.rx : undefined;
}

/** The device id of a position from a frame, or undefined when the element is not a position. */
export function deviceIdOf(position: unknown): string | undefined {
  return isRecord(position) && typeof position.device_id === 'string' ? position.device_id : undefined;
}
