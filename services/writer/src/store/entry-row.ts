import { decodeEntryFields } from '@pitwall/contract';
import { decodePositionRow } from './position-decoder.js';
import { toPositionRow, type PositionRow } from './position-row.js';

const POSITION_FIELD_BYTE = 0x70; // 'p'

/**
 * The row of one stream entry (its flat [field, value, ...] list): the fast decoder when it can,
 * else the contract's decoder, which throws StreamEntryError (undecodable) or InvalidPositionError.
 */
export function entryToRow(fields: readonly Buffer[], nowMs: number): PositionRow {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as Buffer;
    if (name.length !== 1 || name[0] !== POSITION_FIELD_BYTE) continue;
    const row = decodePositionRow(fields[i + 1] as Buffer, nowMs);
    if (row !== undefined) return row;
    break;
  }
  return toPositionRow(decodeEntryFields(fields), nowMs);
}
