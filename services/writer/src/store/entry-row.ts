import { decodeEntryFields, isPositionField } from '@pitwall/contract';
import type { StreamEntries } from '../stream/stream-entries.js';
import type { CopyBatchBuilder } from './copy-batch.js';
import { toPositionRow } from './position-row.js';

/**
 * Adds the position of one stream entry (its flat [field, value, ...] list) to a batch: the fast
 * decoder when it can, else the contract's decoder, which throws StreamEntryError (undecodable) or
 * InvalidPositionError (with the dead-letter reason).
 */
export function addEntry(builder: CopyBatchBuilder, fields: readonly Buffer[], nowMs: number): void {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (!isPositionField(fields[i])) continue;
    if (builder.addPositionBytes(fields[i + 1] as Buffer, nowMs)) return;
    break;
  }
  builder.addRow(toPositionRow(decodeEntryFields(fields), nowMs));
}

/** Adds entry `i` of a stream reply to a batch, decoding its Position in place (addEntry's rules). */
export function addStreamEntry(builder: CopyBatchBuilder, entries: StreamEntries, i: number, nowMs: number): void {
  const start = entries.positionStart(i);
  if (start >= 0 && builder.addPositionBytes(entries.reply, nowMs, start, entries.positionEnd(i))) return;
  builder.addRow(toPositionRow(decodeEntryFields(entries.fields(i)), nowMs));
}
