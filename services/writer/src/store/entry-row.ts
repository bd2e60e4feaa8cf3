import { decodeEntryFields, isPositionField } from '@pitwall/contract';
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
