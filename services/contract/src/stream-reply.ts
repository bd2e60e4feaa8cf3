import { StreamEntryError } from './stream-entry-error.js';

// Typed views of the raw replies of XREAD/XREADGROUP/XRANGE/XAUTOCLAIM read with Buffer replies
// (ioredis `callBuffer`), so consumers never cast. A malformed reply throws StreamEntryError.

export interface RawStreamEntry {
  id: string;
  /** Flat [field, value, ...] list; `decodeEntryFields` finds the Position in it. */
  fields: Buffer[];
}

export interface RawStreamBatch {
  key: string;
  entries: RawStreamEntry[];
}

function asString(value: unknown, what: string): string {
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  if (typeof value === 'string') return value;
  throw new StreamEntryError(`malformed stream reply: ${what} is not a string`);
}

/** Entries of an XRANGE reply, or of one stream of an XREAD reply. Deleted entries (nil fields) are kept with no fields. */
export function parseEntries(reply: unknown): RawStreamEntry[] {
  if (!Array.isArray(reply)) throw new StreamEntryError('malformed stream reply: entries are not a list');
  return reply.map((entry: unknown) => {
    if (!Array.isArray(entry) || entry.length < 2) throw new StreamEntryError('malformed stream reply: entry is not [id, fields]');
    const fields: unknown = entry[1];
    if (fields === null) return { id: asString(entry[0], 'entry id'), fields: [] };
    if (!Array.isArray(fields) || !fields.every((f) => Buffer.isBuffer(f))) {
      throw new StreamEntryError('malformed stream reply: fields are not Buffers (read with callBuffer)');
    }
    return { id: asString(entry[0], 'entry id'), fields };
  });
}

/** An XREAD/XREADGROUP reply: one batch per stream that had entries; empty on timeout (nil). */
export function parseReadReply(reply: unknown): RawStreamBatch[] {
  if (reply === null || reply === undefined) return [];
  if (!Array.isArray(reply)) throw new StreamEntryError('malformed XREAD reply');
  return reply.map((stream: unknown) => {
    if (!Array.isArray(stream) || stream.length < 2) throw new StreamEntryError('malformed XREAD reply: stream is not [key, entries]');
    return { key: asString(stream[0], 'stream key'), entries: parseEntries(stream[1]) };
  });
}
