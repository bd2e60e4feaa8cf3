import type { PositionRow } from './position-row.js';

// PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html): the server
// parses no text, so timestamps and floats cost nothing to convert. One Buffer per batch, sized exactly.

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

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const HEADER_BYTES = SIGNATURE.length + 4 + 4;
const TRAILER_BYTES = 2;
/** PostgreSQL's epoch (2000-01-01) in Unix ms: binary timestamps count microseconds from it. */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_POW_32 = 4_294_967_296;
const JSONB_VERSION = 1;

/** Fixed part of one tuple: field count, ten length words, and the fixed-width values. */
const FIXED_TUPLE_BYTES = 2 + POSITION_COLUMNS.length * 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 2 + 1;

function writeTimestamp(buf: Buffer, offset: number, ms: number): number {
  const micros = (ms - PG_EPOCH_MS) * 1000;
  const high = Math.floor(micros / TWO_POW_32);
  buf.writeInt32BE(8, offset);
  buf.writeInt32BE(high, offset + 4);
  buf.writeUInt32BE(micros - high * TWO_POW_32, offset + 8);
  return offset + 12;
}

/** Encodes rows as one binary COPY stream (header, tuples, trailer) for POSITION_COLUMNS. */
export function encodeBinaryCopy(rows: readonly PositionRow[]): Buffer {
  let size = HEADER_BYTES + TRAILER_BYTES;
  const attributeBytes = new Array<number>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as PositionRow;
    const bytes = Buffer.byteLength(row.attributes, 'utf8');
    attributeBytes[i] = bytes;
    size += FIXED_TUPLE_BYTES + Buffer.byteLength(row.deviceId, 'utf8') + bytes;
  }
  const buf = Buffer.allocUnsafe(size);
  let o = SIGNATURE.copy(buf, 0);
  o = buf.writeInt32BE(0, o); // flags: no OIDs
  o = buf.writeInt32BE(0, o); // header extension length
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as PositionRow;
    o = buf.writeInt16BE(POSITION_COLUMNS.length, o);
    const idLength = buf.write(row.deviceId, o + 4, 'utf8');
    buf.writeInt32BE(idLength, o);
    o += 4 + idLength;
    o = writeTimestamp(buf, o, row.recordedAtMs);
    if (row.receivedAtMs === null) {
      // NULL: length -1 and no value; the buffer is cut to what was written at the end.
      o = buf.writeInt32BE(-1, o);
    } else {
      o = writeTimestamp(buf, o, row.receivedAtMs);
    }
    o = buf.writeInt32BE(8, o);
    o = buf.writeDoubleBE(row.lat, o);
    o = buf.writeInt32BE(8, o);
    o = buf.writeDoubleBE(row.lon, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeFloatBE(row.altitudeM, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeFloatBE(row.speedKmh, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeFloatBE(row.headingDeg, o);
    o = buf.writeInt32BE(2, o);
    o = buf.writeInt16BE(row.satellites, o);
    const jsonBytes = attributeBytes[i] as number;
    o = buf.writeInt32BE(jsonBytes + 1, o);
    o = buf.writeUInt8(JSONB_VERSION, o);
    o += buf.write(row.attributes, o, 'utf8');
  }
  o = buf.writeInt16BE(-1, o);
  return o === buf.length ? buf : buf.subarray(0, o);
}
