import type { ErrorCode } from './errors.js';
import { PROTOCOL_LIMITS } from './limits.js';

// The messages of the live protocol (CONTRACT.md, "WebSocket protocol"), as they are on the wire: JSON
// text frames, snake_case fields. Every reply to a request echoes the request's `uid`.

/** Whatever short string or number the client chose to match replies to requests. */
export type Uid = string | number;

// Client to server

/** First message (or the `access_token` query parameter); sent again to refresh the token. */
export interface AuthRequest {
  type: 'auth';
  access_token: string;
  uid?: Uid;
}

export interface SubscribeRequest {
  type: 'subscribe';
  event_id: number;
  uid?: Uid;
}

export interface UnsubscribeRequest {
  type: 'unsubscribe';
  event_id: number;
  uid?: Uid;
}

export interface PingRequest {
  type: 'ping';
  uid?: Uid;
}

export type ClientMessage = AuthRequest | SubscribeRequest | UnsubscribeRequest | PingRequest;

// Server to client

/** One position of one device as shown in one event. */
export interface WirePosition {
  device_id: string;
  /** The device's entry label in this event (start number or crew). */
  label: string;
  /** Device GNSS time, ms since the epoch. */
  ts: number;
  lat: number;
  lon: number;
  alt: number;
  speed: number;
  heading: number;
  sats: number;
  /** When ingestion received it, ms since the epoch. */
  rx: number;
}

export interface AuthOkMessage {
  type: 'auth';
  status: 'ok';
  /** When the token expires, ms since the epoch: refresh before. */
  expires_at: number;
  uid?: Uid;
}

export interface SubscribedMessage {
  type: 'subscribed';
  event_id: number;
  /** The latest known position of each device of the event. */
  snapshot: WirePosition[];
  uid?: Uid;
}

export interface PositionsMessage {
  type: 'positions';
  event_id: number;
  positions: WirePosition[];
}

/** `client`: the client asked; `forbidden`: Directus no longer lets this user see the event. */
export type UnsubscribeReason = 'client' | 'forbidden';

export interface UnsubscribedMessage {
  type: 'unsubscribed';
  event_id: number;
  reason: UnsubscribeReason;
  uid?: Uid;
}

export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  /** Human text, for logs. */
  message: string;
  /** The event a refused subscribe was for. */
  event_id?: number;
  /** With `rate_limited` and `authorization_unavailable`: when the same request may succeed. */
  retry_after_ms?: number;
  uid?: Uid;
}

export interface PongMessage {
  type: 'pong';
  uid?: Uid;
}

export type ServerMessage = AuthOkMessage | SubscribedMessage | PositionsMessage | UnsubscribedMessage | ErrorMessage | PongMessage;

// Validation of client messages (the gateway's edge; a client may use it to check what it sends)

export type ParseResult = { ok: true; message: ClientMessage } | { ok: false; reason: string; uid?: Uid };

function readUid(value: unknown): Uid | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && value.length <= PROTOCOL_LIMITS.maxUidLength) return value;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  return null;
}

/** A positive integer id; a decimal string ("42") is accepted too, since Directus may serialise ids as strings. */
function readEventId(value: unknown): number | undefined {
  const id = typeof value === 'string' && /^[1-9]\d{0,15}$/.test(value) ? Number(value) : value;
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses one client text frame. Never throws: bad input is `{ ok: false }` with the reason for the client. */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'message is not valid JSON' };
  }
  if (!isRecord(value)) return { ok: false, reason: 'message must be a JSON object' };
  const uid = readUid(value.uid);
  if (uid === null) {
    return { ok: false, reason: `uid must be a string of at most ${PROTOCOL_LIMITS.maxUidLength} characters or a number` };
  }
  const echo = uid === undefined ? {} : { uid };
  switch (value.type) {
    case 'auth': {
      const token = value.access_token;
      if (typeof token !== 'string' || token.length === 0 || token.length > PROTOCOL_LIMITS.maxTokenLength) {
        return { ok: false, reason: 'auth needs access_token, a non-empty string', ...echo };
      }
      return { ok: true, message: { type: 'auth', access_token: token, ...echo } };
    }
    case 'subscribe':
    case 'unsubscribe': {
      const eventId = readEventId(value.event_id);
      if (eventId === undefined) return { ok: false, reason: `${value.type} needs event_id, a positive integer`, ...echo };
      return { ok: true, message: { type: value.type, event_id: eventId, ...echo } };
    }
    case 'ping':
      return { ok: true, message: { type: 'ping', ...echo } };
    default:
      return {
        ok: false,
        reason: typeof value.type === 'string' ? `unknown message type "${value.type.slice(0, 40)}"` : 'message has no type',
        ...echo,
      };
  }
}
