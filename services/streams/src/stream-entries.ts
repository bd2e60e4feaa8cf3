import { POSITION_FIELD, TRACE_FIELD, type RawStreamEntry } from '@pitwall/contract';
import { RedisReplyError } from './redis-reply-error.js';
import { bulkLength, encodeCommand, headerLength, RespCursor, RespType, writeBulk, writeHeader } from './resp.js';

// Where each entry of a stream reply is, as offsets into the reply's bytes: per entry its id, its
// fields list (or -1: the entry was deleted from the stream), the value of field `p` (or -1) and of
// field `tp`, the traceparent a sampled position carries (or -1).
const ID_START = 0;
const ID_END = 1;
const FIELDS_AT = 2;
const POSITION_START = 3;
const POSITION_END = 4;
const TRACE_START = 5;
const TRACE_END = 6;
const STRIDE = 7;

const POSITION_FIELD_BYTES = Buffer.from(POSITION_FIELD, 'latin1');
const TRACE_FIELD_BYTES = Buffer.from(TRACE_FIELD, 'latin1');

/**
 * The entries one read returned from one shard, read in place from the reply's bytes: the batch
 * costs a few objects however many entries it holds, and ids go back into XACK as bytes.
 */
export class StreamEntries {
  constructor(
    /** Shard stream they came from. */
    readonly key: string,
    readonly reply: Buffer,
    readonly length: number,
    private readonly offsets: Int32Array,
  ) {}

  id(i: number): string {
    return this.reply.toString('latin1', this.at(i, ID_START), this.at(i, ID_END));
  }

  lastId(): string {
    return this.id(this.length - 1);
  }

  /** False for a pending entry deleted from the stream since it was delivered (nil fields). */
  exists(i: number): boolean {
    return this.at(i, FIELDS_AT) >= 0;
  }

  /** Where the value of field `p` (the Position) is in `reply`: [start, end), or -1 when there is none. */
  positionStart(i: number): number {
    return this.at(i, POSITION_START);
  }

  positionEnd(i: number): number {
    return this.at(i, POSITION_END);
  }

  /** The traceparent of a sampled position (field `tp`), or undefined. */
  traceparent(i: number): string | undefined {
    const start = this.at(i, TRACE_START);
    return start < 0 ? undefined : this.reply.toString('latin1', start, this.at(i, TRACE_END));
  }

  /** The entry's flat [field, value, ...] list (views of the reply): for the slow decoder and dead letters. */
  fields(i: number): Buffer[] {
    const at = this.at(i, FIELDS_AT);
    if (at < 0) return [];
    const cursor = new RespCursor(this.reply);
    cursor.pos = at;
    const count = cursor.array('fields');
    const fields: Buffer[] = [];
    for (let f = 0; f < count; f++) {
      cursor.bulk('field');
      fields.push(this.reply.subarray(cursor.start, cursor.end));
    }
    return fields;
  }

  entry(i: number): RawStreamEntry {
    return { id: this.id(i), fields: this.fields(i) };
  }

  /** Bytes of the ids of every entry as RESP bulk strings (what XACK takes after the key and group). */
  idsLength(): number {
    let size = 0;
    for (let i = 0; i < this.length; i++) size += bulkLength(this.at(i, ID_END) - this.at(i, ID_START));
    return size;
  }

  /** Writes the ids as RESP bulk strings at `o`; returns the offset after them. */
  writeIds(out: Buffer, o: number): number {
    for (let i = 0; i < this.length; i++) o = writeBulk(out, o, this.reply, this.at(i, ID_START), this.at(i, ID_END));
    return o;
  }

  private at(i: number, slot: number): number {
    return this.offsets[i * STRIDE + slot] as number;
  }
}

/** Entries of one stream at the cursor ([[id, [field, value, ...] | nil], ...]). */
function readEntries(cursor: RespCursor, key: string, skipDeleted: boolean): StreamEntries {
  const count = cursor.array('entries');
  const offsets = new Int32Array(Math.max(count, 0) * STRIDE);
  let n = 0;
  for (let e = 0; e < count; e++) {
    if (cursor.array('entry') !== 2) throw new RedisReplyError('malformed stream reply: entry is not [id, fields]');
    if (!cursor.bulk('entry id')) throw new RedisReplyError('malformed stream reply: entry id is nil');
    const base = n * STRIDE;
    offsets[base + ID_START] = cursor.start;
    offsets[base + ID_END] = cursor.end;
    offsets[base + POSITION_START] = -1;
    offsets[base + POSITION_END] = -1;
    offsets[base + TRACE_START] = -1;
    const fieldsAt = cursor.pos;
    const fields = cursor.array('fields');
    offsets[base + FIELDS_AT] = fields < 0 ? -1 : fieldsAt;
    for (let f = 0; f < fields; f += 2) {
      cursor.bulk('field name');
      const isPosition = cursor.buf.compare(POSITION_FIELD_BYTES, 0, POSITION_FIELD_BYTES.length, cursor.start, cursor.end) === 0;
      const isTrace = !isPosition && cursor.buf.compare(TRACE_FIELD_BYTES, 0, TRACE_FIELD_BYTES.length, cursor.start, cursor.end) === 0;
      if (f + 1 === fields) break;
      cursor.bulk('field value');
      if (isPosition && offsets[base + POSITION_START] === -1) {
        offsets[base + POSITION_START] = cursor.start;
        offsets[base + POSITION_END] = cursor.end;
      } else if (isTrace) {
        offsets[base + TRACE_START] = cursor.start;
        offsets[base + TRACE_END] = cursor.end;
      }
    }
    if (fields >= 0 || !skipDeleted) n++;
  }
  return new StreamEntries(key, cursor.buf, n, offsets);
}

/** An XREADGROUP/XREAD reply: the entries of every stream that had some; empty on timeout (nil). */
export function parseStreamRead(reply: Buffer): StreamEntries[] {
  const cursor = new RespCursor(reply);
  const streams = cursor.array('XREADGROUP reply');
  const batches: StreamEntries[] = [];
  for (let s = 0; s < streams; s++) {
    if (cursor.array('stream') !== 2) throw new RedisReplyError('malformed XREADGROUP reply: stream is not [key, entries]');
    // UTF-8, as the key was sent: XACK and the pending cursors name it again.
    const key = cursor.string('stream key', 'utf8');
    const entries = readEntries(cursor, key, false);
    if (entries.length > 0) batches.push(entries);
  }
  return batches;
}

/**
 * An XAUTOCLAIM reply: the cursor to continue from, the entries claimed, and the ids that no longer
 * exist in the stream (Redis 7 lists them apart; 6.2 returned them as nil entries, skipped here).
 */
export function parseAutoClaim(reply: Buffer, key: string): { entries: StreamEntries; next: string; deleted: string[] } {
  const cursor = new RespCursor(reply);
  const parts = cursor.array('XAUTOCLAIM reply');
  if (parts < 2) throw new RedisReplyError('malformed XAUTOCLAIM reply');
  const next = cursor.string('cursor');
  const entries = readEntries(cursor, key, true);
  const deleted: string[] = [];
  if (parts > 2) {
    const count = cursor.array('deleted ids');
    for (let i = 0; i < count; i++) deleted.push(cursor.string('deleted id'));
  }
  return { entries, next, deleted };
}

/** XACK <key> <group> <id>... of every entry of `batches` (all of shard `key`), as one RESP command. */
export function encodeAck(key: string, group: string, batches: readonly StreamEntries[]): Buffer {
  const head = [Buffer.from('XACK'), Buffer.from(key, 'utf8'), Buffer.from(group, 'utf8')];
  let count = head.length;
  let size = 0;
  for (const part of head) size += bulkLength(part.length);
  for (const batch of batches) {
    count += batch.length;
    size += batch.idsLength();
  }
  size += headerLength(count);
  const out = Buffer.allocUnsafe(size);
  let o = writeHeader(out, 0, RespType.Array, count);
  for (const part of head) o = writeBulk(out, o, part, 0, part.length);
  for (const batch of batches) o = batch.writeIds(out, o);
  return out;
}

/** One shard's read in a consumer group, as encodeGroupRead builds it. */
export interface GroupRead {
  key: string;
  group: string;
  consumer: string;
  count: number;
  /** BLOCK ms; undefined: no BLOCK (a read that returns at once). */
  blockMs?: number | undefined;
  /** NOACK: nothing goes to the pending list (the gateway's fan-out, where a late position is worth nothing). */
  noAck?: boolean | undefined;
  /** Read after this id (the consumer's own pending entries); default `>`: entries never delivered to the group. */
  after?: string | undefined;
}

/** XREADGROUP GROUP <group> <consumer> COUNT <n> [BLOCK <ms>] [NOACK] STREAMS <key> <after>, as one RESP command. */
export function encodeGroupRead(read: GroupRead): Buffer {
  return encodeCommand([
    'XREADGROUP',
    'GROUP',
    read.group,
    read.consumer,
    'COUNT',
    read.count,
    ...(read.blockMs === undefined ? [] : ['BLOCK', read.blockMs]),
    ...(read.noAck === true ? ['NOACK'] : []),
    'STREAMS',
    read.key,
    read.after ?? '>',
  ]);
}
