import { RedisReplyError } from './redis-reply-error.js';

// RESP2 (https://redis.io/docs/latest/develop/reference/protocol-spec/), only what the services' own
// stream connections (the writer's, the live gateway's readers) need: commands out as one buffer, replies in as the raw bytes of one complete
// reply, read in place by offset. A general client (ioredis) turns every bulk string into a Buffer
// object and every array into a JS array: for a read of 5,000 entries that is 25,000 objects, which
// stay alive until the batch is acknowledged and made the writer spend a fifth of its CPU in the
// garbage collector copying them between generations; the gateway, which reads every entry of every
// shard on every pod, spent more on them than on everything else it does with a position.

const CR = 0x0d;
const LF = 0x0a;
const CRLF_BYTES = 2;

/** First byte of each RESP2 type. */
export const RespType = {
  Simple: 0x2b, // +
  Error: 0x2d, // -
  Integer: 0x3a, // :
  Bulk: 0x24, // $
  Array: 0x2a, // *
} as const;
export type RespType = (typeof RespType)[keyof typeof RespType];

/** One command as RESP: an array of bulk strings. */
export function encodeCommand(args: readonly (string | number | Buffer)[]): Buffer {
  const parts = args.map((arg) => (Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), 'utf8')));
  let size = headerLength(parts.length);
  for (const part of parts) size += bulkLength(part.length);
  const out = Buffer.allocUnsafe(size);
  let o = writeHeader(out, 0, RespType.Array, parts.length);
  for (const part of parts) o = writeBulk(out, o, part, 0, part.length);
  return out;
}

/** Bytes of a bulk string of `n` bytes: header, bytes, CRLF. */
export function bulkLength(n: number): number {
  return headerLength(n) + n + CRLF_BYTES;
}

/**
 * Writes bytes[start, end) as a bulk string at `o`; returns the offset after it. Short ones byte by
 * byte: for an entry id (3 to 41 bytes) a Buffer.copy call costs more than the copy.
 */
export function writeBulk(out: Buffer, o: number, bytes: Buffer, start: number, end: number): number {
  o = writeHeader(out, o, RespType.Bulk, end - start);
  if (end - start > 64) o += bytes.copy(out, o, start, end);
  else for (let b = start; b < end; b++) out[o++] = bytes[b] as number;
  return writeCrlf(out, o);
}

/** Decimal digits of a non-negative integer. */
function digitCount(n: number): number {
  let digits = 1;
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  return digits;
}

/** Bytes of a `<type><n>\r\n` header (n >= 0). */
export function headerLength(n: number): number {
  return 1 + digitCount(n) + CRLF_BYTES;
}

/** Writes `<type><n>\r\n` (n >= 0) at `o` without making a string of n; returns the offset after it. */
export function writeHeader(out: Buffer, o: number, type: RespType, n: number): number {
  out[o++] = type;
  const digits = digitCount(n);
  let rest = n;
  for (let i = digits - 1; i >= 0; i--) {
    out[o + i] = 0x30 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  return writeCrlf(out, o + digits);
}

function writeCrlf(out: Buffer, o: number): number {
  out[o++] = CR;
  out[o++] = LF;
  return o;
}

/**
 * Finds where complete replies end in bytes that arrive in pieces. Resumable: it remembers how far it
 * got and which arrays are still open, so every byte is scanned once however the reply is split.
 */
export class ReplyScanner {
  /** First byte not scanned yet (always the start of an element). */
  private pos = 0;
  /** Elements still expected by each open array, outermost first. */
  private readonly open: number[] = [];

  /**
   * Scans `buf[0, length)` from where the last call stopped; returns the end of the first complete
   * reply, or -1 when more bytes are needed. After a reply is taken, call `reset`.
   */
  scan(buf: Buffer, length: number): number {
    for (;;) {
      const lineEnd = findCrlf(buf, this.pos + 1, length);
      if (lineEnd < 0) return -1;
      const type = buf[this.pos];
      let next = lineEnd + CRLF_BYTES;
      if (type === RespType.Bulk) {
        const n = parseInteger(buf, this.pos + 1, lineEnd);
        if (n >= 0) {
          next += n + CRLF_BYTES;
          if (next > length) return -1;
        }
      } else if (type === RespType.Array) {
        const n = parseInteger(buf, this.pos + 1, lineEnd);
        this.pos = next;
        if (n > 0) {
          this.open.push(n);
          continue;
        }
      } else if (type !== RespType.Simple && type !== RespType.Error && type !== RespType.Integer) {
        throw new RedisReplyError(`unexpected RESP type byte 0x${(type ?? 0).toString(16)}`);
      }
      this.pos = next;
      // An element is complete: close every array it completes.
      for (;;) {
        const depth = this.open.length;
        if (depth === 0) return this.pos;
        const left = (this.open[depth - 1] as number) - 1;
        if (left > 0) {
          this.open[depth - 1] = left;
          break;
        }
        this.open.pop();
      }
    }
  }

  /** Forgets the reply just taken: scanning continues at offset 0 of what follows it. */
  reset(): void {
    this.pos = 0;
    this.open.length = 0;
  }
}

/** Offset of the CR of the first CRLF in [from, length), or -1. */
function findCrlf(buf: Buffer, from: number, length: number): number {
  for (let i = from; i + 1 < length; i++) {
    if (buf[i] === CR) {
      if (buf[i + 1] !== LF) throw new RedisReplyError('malformed RESP line: CR without LF');
      return i;
    }
  }
  return -1;
}

/** A decimal integer in buf[from, to), e.g. the length of a bulk string. */
function parseInteger(buf: Buffer, from: number, to: number): number {
  let i = from;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  if (i >= to) throw new RedisReplyError('malformed RESP integer');
  let n = 0;
  for (; i < to; i++) {
    const digit = (buf[i] as number) - 0x30;
    if (digit < 0 || digit > 9) throw new RedisReplyError('malformed RESP integer');
    n = n * 10 + digit;
  }
  return negative ? -n : n;
}

/**
 * Reads one complete reply element by element, in place. Each method reads the element at the
 * cursor and moves past it; a different element than expected throws RedisReplyError.
 */
export class RespCursor {
  pos = 0;
  /** Start and end of the last bulk string read. */
  start = 0;
  end = 0;

  constructor(readonly buf: Buffer) {}

  /** An array's element count, or -1 for a nil array. An error reply throws it. */
  array(what: string): number {
    return this.header(RespType.Array, what);
  }

  /** A bulk string: its bytes are buf[start, end). False for a nil bulk string. */
  bulk(what: string): boolean {
    const n = this.header(RespType.Bulk, what);
    if (n < 0) return false;
    this.start = this.pos;
    this.end = this.pos + n;
    this.pos = this.end + CRLF_BYTES;
    return true;
  }

  /** A bulk string as text (ids are ASCII: latin1 is the cheapest decoding); throws on nil. */
  string(what: string, encoding: 'latin1' | 'utf8' = 'latin1'): string {
    if (!this.bulk(what)) throw new RedisReplyError(`malformed reply: ${what} is nil`);
    return this.buf.toString(encoding, this.start, this.end);
  }

  /** An integer reply. */
  integer(what: string): number {
    return this.header(RespType.Integer, what);
  }

  private header(expected: RespType, what: string): number {
    const type = this.buf[this.pos];
    const lineEnd = this.lineEnd();
    if (type === RespType.Error) throw new RedisReplyError(this.buf.toString('utf8', this.pos + 1, lineEnd));
    if (type !== expected) throw new RedisReplyError(`malformed reply: ${what} is not a ${RESP_TYPE_NAMES.get(expected) ?? 'value'}`);
    const n = parseInteger(this.buf, this.pos + 1, lineEnd);
    this.pos = lineEnd + CRLF_BYTES;
    return n;
  }

  private lineEnd(): number {
    const lineEnd = findCrlf(this.buf, this.pos + 1, this.buf.length);
    if (lineEnd < 0) throw new RedisReplyError('malformed reply: truncated');
    return lineEnd;
  }
}

const RESP_TYPE_NAMES = new Map<RespType, string>([
  [RespType.Array, 'list'],
  [RespType.Bulk, 'string'],
  [RespType.Integer, 'number'],
]);

/** The message of a top-level error reply, or undefined when the reply is not one. */
export function errorReply(reply: Buffer): string | undefined {
  if (reply[0] !== RespType.Error) return undefined;
  return reply.toString('utf8', 1, reply.length - CRLF_BYTES);
}
