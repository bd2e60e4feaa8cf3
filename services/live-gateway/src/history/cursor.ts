import { compareIds, formatEntryId, parseEntryId, type EntryId } from './entry-id.js';

// The gateway's cursor format (opaque to clients, @pitwall/live-protocol `Cursor`):
//   `1.<shards>.<id of source 0>.<id of source 1>...`   ids `<ms>-<seq>`, `_` for "nothing yet"
// A source is a stream the gateway reads: sources 0..shards-1 are the durable shard streams, the sources
// after them the live-only streams of the same shards (issue 14), in shard order. Per source, the id is the
// highest entry the frame covers: every position of the event in that source up to that id was sent.

const VERSION = '1';
const NONE = '_';

export type SourceIds = readonly (EntryId | undefined)[];

export function encodeCursor(shards: number, ids: SourceIds): string {
  let text = `${VERSION}.${shards}`;
  for (const id of ids) text += `.${id === undefined ? NONE : formatEntryId(id)}`;
  return text;
}

/**
 * Reads a cursor made by a gateway with `shards` shards. undefined when it is not one (another version, a
 * different shard count: its ids would not mean the same here).
 */
export function decodeCursor(text: string, shards: number, sources: number): (EntryId | undefined)[] | undefined {
  const parts = text.split('.');
  if (parts.length < 2 || parts[0] !== VERSION || parts[1] !== String(shards)) return undefined;
  const ids = parts.slice(2);
  if (ids.length > sources) return undefined;
  const result: (EntryId | undefined)[] = [];
  for (const part of ids) {
    if (part === NONE) {
      result.push(undefined);
      continue;
    }
    const id = parseEntryId(part);
    if (id === undefined) return undefined;
    result.push(id);
  }
  while (result.length < sources) result.push(undefined);
  return result;
}

/** Whether `a` is at or after `b` (undefined: before everything). */
export function atOrAfter(a: EntryId | undefined, b: EntryId | undefined): boolean {
  if (b === undefined) return true;
  if (a === undefined) return false;
  return compareIds(a, b) >= 0;
}
