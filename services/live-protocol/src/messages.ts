import type { ErrorCode } from './errors.js';
import { PROTOCOL_LIMITS } from './limits.js';

// The messages of the live protocol (docs/interfaces.md, "WebSocket protocol"), as they are on the wire: JSON
// text frames, snake_case fields. Every reply to a request echoes the request's `uid`.

/** Whatever short string or number the client chose to match replies to requests. */
export type Uid = string | number;

/**
 * How far in the position streams a frame goes, the same on every gateway pod (stream entry ids are).
 * Opaque: a client stores the latest one per event and sends it back as `since` when it subscribes again.
 */
export type Cursor = string;

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
  /**
   * Resume: the `cursor` of the last `positions` frame (or `subscribed` reply) this client handled for
   * this event, from any gateway pod. The reply says whether the gap could be filled (`recovered`).
   */
  since?: Cursor;
  /** Trails: the reply's `history` holds the event's positions of the last this many seconds. */
  history_seconds?: number;
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
  /**
   * The latest known position of each device of the event. Empty when `recovered` is true: the
   * positions the client missed follow instead.
   */
  snapshot: WirePosition[];
  /**
   * Only when the subscribe had `since`. true: every position of the event after that cursor follows, in
   * order, in `positions` frames before live ones (none missing, none twice). false: the gap is beyond
   * what the gateway holds; `snapshot` stands in for it.
   */
  recovered?: boolean;
  /**
   * Only when the subscribe had `history_seconds`: the event's positions of that many seconds (at most
   * the gateway's window) in stream order, oldest first, up to where the frames that follow start. Empty
   * when `recovered` is true (the client has its trail), so a client may always send both.
   */
  history?: WirePosition[];
  /** Where this reply leaves the client: send it as `since` if no `positions` frame came before a reconnect. */
  cursor?: Cursor;
  uid?: Uid;
}

export interface PositionsMessage {
  type: 'positions';
  event_id: number;
  positions: WirePosition[];
  /** Everything of this event up to here has been sent on this connection: resume from it with `since`. */
  cursor: Cursor;
}

/** Why a subscription ended: `client`: the client asked; `forbidden`: Directus no longer lets this user see the event. */
export const UNSUBSCRIBE_REASONS = { client: 'client', forbidden: 'forbidden' } as const;

export type UnsubscribeReason = (typeof UNSUBSCRIBE_REASONS)[keyof typeof UNSUBSCRIBE_REASONS];

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
  /**
   * With `rate_limited` and `authorization_unavailable` (always, from this gateway): when the same
   * request may succeed, ms. Clients wait at least this long, plus jitter: `backoffDelayMs` / `Backoff`.
   */
  retry_after_ms?: number;
  /** With `going_away`: reconnect elsewhere after a random delay of up to this many ms. */
  reconnect_within_ms?: number;
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
    case 'subscribe': {
      const eventId = readEventId(value.event_id);
      if (eventId === undefined) return { ok: false, reason: 'subscribe needs event_id, a positive integer', ...echo };
      const message: SubscribeRequest = { type: 'subscribe', event_id: eventId, ...echo };
      if (value.since !== undefined) {
        const since = value.since;
        if (typeof since !== 'string' || since.length === 0 || since.length > PROTOCOL_LIMITS.maxCursorLength) {
          return { ok: false, reason: `since must be a cursor string of at most ${PROTOCOL_LIMITS.maxCursorLength} characters`, ...echo };
        }
        message.since = since;
      }
      if (value.history_seconds !== undefined) {
        const seconds = value.history_seconds;
        if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 0 || seconds > PROTOCOL_LIMITS.maxHistorySeconds) {
          return { ok: false, reason: `history_seconds must be an integer from 0 to ${PROTOCOL_LIMITS.maxHistorySeconds}`, ...echo };
        }
        message.history_seconds = seconds;
      }
      return { ok: true, message };
    }
    case 'unsubscribe': {
      const eventId = readEventId(value.event_id);
      if (eventId === undefined) return { ok: false, reason: 'unsubscribe needs event_id, a positive integer', ...echo };
      return { ok: true, message: { type: 'unsubscribe', event_id: eventId, ...echo } };
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

const SERVER_TYPES: ReadonlySet<string> = new Set(['auth', 'subscribed', 'positions', 'unsubscribed', 'error', 'pong']);

/**
 * Reads one server text frame (for clients). Checks only what a client branches on (the type, the event
 * id of event messages, the position arrays and the error code); anything else is undefined.
 */
export function parseServerMessage(text: string): ServerMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value) || typeof value.type !== 'string' || !SERVER_TYPES.has(value.type)) return undefined;
  switch (value.type) {
    case 'subscribed':
      if (typeof value.event_id !== 'number' || !Array.isArray(value.snapshot)) return undefined;
      if (value.history !== undefined && !Array.isArray(value.history)) return undefined;
      break;
    case 'positions':
      if (typeof value.event_id !== 'number' || !Array.isArray(value.positions)) return undefined;
      break;
    case 'unsubscribed':
      if (typeof value.event_id !== 'number') return undefined;
      break;
    case 'error':
      if (typeof value.code !== 'string') return undefined;
      break;
  }
  return value as unknown as ServerMessage;
}
