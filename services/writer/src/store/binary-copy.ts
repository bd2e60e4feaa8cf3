import { encodeBatch } from './copy-batch.js';
import type { PositionRow } from './position-row.js';

/** Columns of `positions` in the order every COPY and INSERT of the writer uses. */
export const POSITION_COLUMNS = [
  'device_id',
  'recorded_at',
  'received_at',
  'lat',
  'lon',
  'altitude_m',
  'speed_kmh',
  'heading_deg',
  'satellites',
  'attributes',
] as const;

/** Encodes rows as one binary COPY stream (header, tuples, trailer) for POSITION_COLUMNS. */
export function encodeBinaryCopy(rows: readonly PositionRow[]): Buffer {
  return encodeBatch(rows).copyData;
}
