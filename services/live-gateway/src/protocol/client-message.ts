// Messages a client sends (CONTRACT.md, WebSocket protocol), validated once at the edge so the rest
// of the gateway only sees well-formed requests.

/** Echoed on every reply: whatever short string or number the client chose. */
export type Uid = string | number;

export type ClientMessage =
  | { type: 'auth'; accessToken: string; uid?: Uid }
  | { type: 'subscribe'; eventId: number; uid?: Uid }
  | { type: 'unsubscribe'; eventId: number; uid?: Uid }
  | { type: 'ping'; uid?: Uid };

export type ParseResult = { ok: true; message: ClientMessage } | { ok: false; reason: string; uid?: Uid };

const MAX_UID_LENGTH = 128;
const MAX_TOKEN_LENGTH = 8192;

function readUid(value: unknown): Uid | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && value.length <= MAX_UID_LENGTH) return value;
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

/** Parses one text frame. Never throws: bad input is a `{ ok: false }` with the reason for the client. */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'message is not valid JSON' };
  }
  if (!isRecord(value)) return { ok: false, reason: 'message must be a JSON object' };
  const uid = readUid(value.uid);
  if (uid === null) return { ok: false, reason: `uid must be a string of at most ${MAX_UID_LENGTH} characters or a number` };
  const echo = uid === undefined ? {} : { uid };
  switch (value.type) {
    case 'auth': {
      const token = value.access_token;
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
        return { ok: false, reason: 'auth needs access_token, a non-empty string', ...echo };
      }
      return { ok: true, message: { type: 'auth', accessToken: token, ...echo } };
    }
    case 'subscribe':
    case 'unsubscribe': {
      const eventId = readEventId(value.event_id);
      if (eventId === undefined) return { ok: false, reason: `${value.type} needs event_id, a positive integer`, ...echo };
      return { ok: true, message: { type: value.type, eventId, ...echo } };
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
