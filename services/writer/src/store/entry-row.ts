import { decodeEntryFields } from '@pitwall/contract';
import type { StreamEntries } from '../stream/stream-entries.js';
import type { CopyBatchBuilder } from './copy-batch.js';
import { toPositionRow } from './position-row.js';

/**
 * Adds the position of entry `i` of a stream reply to a batch: the fast decoder on its field `p` in
 * place when it can, else the contract's decoder on its fields, which throws StreamEntryError
 * (undecodable, no field `p`) or InvalidPositionError (with the dead-letter reason).
 */
export function addStreamEntry(builder: CopyBatchBuilder, entries: StreamEntries, i: number, nowMs: number): void {
  const start = entries.positionStart(i);
  if (start >= 0 && builder.addPositionBytes(entries.reply, nowMs, start, entries.positionEnd(i))) return;
  builder.addRow(toPositionRow(decodeEntryFields(entries.fields(i)), nowMs));
}
