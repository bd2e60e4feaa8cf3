import { decodeEntryFields } from '@pitwall/contract';
import type { CopyBatchBuilder } from './copy-batch.js';
import { toPositionRow } from './position-row.js';

/**
 * Stream entries as the store needs them (stream/'s StreamEntries is one): the reply they were read
 * from, where field `p` of entry i is in it, and its fields for the contract's decoder. Declared here
 * so that store/ does not depend on stream/.
 */
export interface PositionEntries {
  readonly reply: Buffer;
  /** Offset of entry i's field `p` value in reply, or -1 when it has none. */
  positionStart(i: number): number;
  positionEnd(i: number): number;
  fields(i: number): Buffer[];
}

/**
 * Adds the position of entry `i` of a stream reply to a batch: the fast decoder on its field `p` in
 * place when it can, else the contract's decoder on its fields, which throws StreamEntryError
 * (undecodable, no field `p`) or InvalidPositionError (with the dead-letter reason).
 */
export function addStreamEntry(builder: CopyBatchBuilder, entries: PositionEntries, i: number, nowMs: number): void {
  const start = entries.positionStart(i);
  if (start >= 0 && builder.addPositionBytes(entries.reply, nowMs, start, entries.positionEnd(i))) return;
  builder.addRow(toPositionRow(decodeEntryFields(entries.fields(i)), nowMs));
}
