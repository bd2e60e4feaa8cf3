import { Codec, MAX_POSITION_ENTRY_BYTES, MAX_STORED_IO_VALUE_BYTES } from '@pitwall/contract';
import { CODEC_16, CODEC_8, type AvlCodecId, type AvlRecord } from '@pitwall/teltonika';

// Serialises AVL records as `pitwall.telemetry.v1.Position` protobuf, byte for byte what the
// contract's encodePosition (protobuf-es) produces, at a small fraction of its cost (~30 us per
// record there): no intermediate message objects, one buffer per packet, the device id field encoded
// once per device. test/position-writer.test.ts holds it to byte equality with encodePosition.

/** The protobuf codec enum of a wire codec id. */
export function positionCodec(codec: AvlCodecId): Codec {
  return codec === CODEC_8 ? Codec.CODEC_8 : codec === CODEC_16 ? Codec.CODEC_16 : Codec.CODEC_8_EXTENDED;
}

/** Field 1 (device_id) of a device, encoded once: tag, length, ASCII IMEI. */
export function deviceIdField(imei: string): Buffer {
  const bytes = Buffer.from(imei, 'utf8');
  const field = Buffer.allocUnsafe(1 + varintSize(bytes.length) + bytes.length);
  field[0] = 0x0a;
  const pos = writeVarint(field, 1, bytes.length);
  bytes.copy(field, pos);
  return field;
}

function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x20_0000) return 3;
  if (value < 0x1000_0000) return 4;
  let size = 4;
  let v = Math.floor(value / 0x1000_0000);
  while (v > 0) {
    size++;
    v = Math.floor(v / 0x80);
  }
  return size;
}

/** Non-negative integer up to 2^53, as a varint. Returns the position after it. */
function writeVarint(buf: Buffer, pos: number, value: number): number {
  while (value >= 0x80) {
    buf[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buf[pos++] = value;
  return pos;
}

/** uint64 as a varint (bigint path only above 2^53). */
function writeVarint64(buf: Buffer, pos: number, value: bigint): number {
  if (value <= 0x1f_ffff_ffff_ffffn) return writeVarint(buf, pos, Number(value));
  let v = value;
  while (v >= 0x80n) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
  return pos;
}

function varint64Size(value: bigint): number {
  if (value <= 0x1f_ffff_ffff_ffffn) return varintSize(Number(value));
  let size = 1;
  for (let v = value; v >= 0x80n; v >>= 7n) size++;
  return size;
}

function zigzag32(n: number): number {
  return ((n << 1) ^ (n >> 31)) >>> 0;
}

/** Upper bound of one encoded record, device id excluded. */
function recordBound(record: AvlRecord): number {
  // int64 x2 (11 each), sint32 x3 and uint32 x5 (6 each), codec (2), generation type (6).
  let bound = 22 + 48 + 2 + 6;
  for (const element of record.io) bound += 2 + 6 + 6 + 11 + 6 + (element.raw?.length ?? 0);
  return bound;
}

/** IO elements left out of what is stored, by why (callers count them). */
export interface DroppedIo {
  /** A variable-length value longer than MAX_STORED_IO_VALUE_BYTES. */
  valueTooLarge: number;
  /** The element would have made the entry larger than MAX_POSITION_ENTRY_BYTES. */
  entryFull: number;
}

/** Codec (2 bytes) and generation type (at most 2): always written after the IO elements. */
const TRAILER_BYTES = 4;

/**
 * Encodes every record of a packet as a Position. Returns one view per record into a single buffer.
 * Timestamps are ms since the epoch (non-negative, below 2^53). Byte bounds: a variable-length IO
 * value longer than MAX_STORED_IO_VALUE_BYTES is left out, and so is any IO element that would make
 * the entry exceed MAX_POSITION_ENTRY_BYTES; the position itself is always kept. Left-out elements
 * are added to `dropped`.
 */
export function encodePositions(
  idField: Buffer,
  receivedAtMs: number,
  codec: AvlCodecId,
  records: readonly AvlRecord[],
  dropped?: DroppedIo,
): Buffer[] {
  let bound = 0;
  for (const record of records) bound += idField.length + recordBound(record);
  const buf = Buffer.allocUnsafe(bound);
  const codecValue = positionCodec(codec);
  const out: Buffer[] = new Array<Buffer>(records.length);
  let pos = 0;
  for (let r = 0; r < records.length; r++) {
    const record = records[r] as AvlRecord;
    const start = pos;
    pos += idField.copy(buf, pos);
    if (record.timestampMs !== 0) {
      buf[pos++] = 0x10;
      pos = writeVarint(buf, pos, record.timestampMs);
    }
    if (receivedAtMs !== 0) {
      buf[pos++] = 0x18;
      pos = writeVarint(buf, pos, receivedAtMs);
    }
    if (record.latE7 !== 0) {
      buf[pos++] = 0x20;
      pos = writeVarint(buf, pos, zigzag32(record.latE7));
    }
    if (record.lonE7 !== 0) {
      buf[pos++] = 0x28;
      pos = writeVarint(buf, pos, zigzag32(record.lonE7));
    }
    if (record.altitudeM !== 0) {
      buf[pos++] = 0x30;
      pos = writeVarint(buf, pos, zigzag32(record.altitudeM));
    }
    if (record.speedKmh !== 0) {
      buf[pos++] = 0x38;
      pos = writeVarint(buf, pos, record.speedKmh);
    }
    if (record.headingDeg !== 0) {
      buf[pos++] = 0x40;
      pos = writeVarint(buf, pos, record.headingDeg);
    }
    if (record.satellites !== 0) {
      buf[pos++] = 0x48;
      pos = writeVarint(buf, pos, record.satellites);
    }
    if (record.priority !== 0) {
      buf[pos++] = 0x50;
      pos = writeVarint(buf, pos, record.priority);
    }
    if (record.eventIoId !== 0) {
      buf[pos++] = 0x58;
      pos = writeVarint(buf, pos, record.eventIoId);
    }
    for (const element of record.io) {
      const raw = element.raw;
      const rawLength = raw === undefined ? 0 : raw.length;
      let size = 0;
      if (element.id !== 0) size += 1 + varintSize(element.id);
      if (element.width !== 0) size += 2;
      if (element.value !== 0n) size += 1 + varint64Size(element.value);
      if (rawLength !== 0) size += 1 + varintSize(rawLength) + rawLength;
      if (rawLength > MAX_STORED_IO_VALUE_BYTES) {
        if (dropped !== undefined) dropped.valueTooLarge++;
        continue;
      }
      if (pos - start + 1 + varintSize(size) + size + TRAILER_BYTES > MAX_POSITION_ENTRY_BYTES) {
        if (dropped !== undefined) dropped.entryFull++;
        continue;
      }
      buf[pos++] = 0x62;
      pos = writeVarint(buf, pos, size);
      if (element.id !== 0) {
        buf[pos++] = 0x08;
        pos = writeVarint(buf, pos, element.id);
      }
      if (element.width !== 0) {
        buf[pos++] = 0x10;
        buf[pos++] = element.width;
      }
      if (element.value !== 0n) {
        buf[pos++] = 0x18;
        pos = writeVarint64(buf, pos, element.value);
      }
      if (raw !== undefined && rawLength !== 0) {
        buf[pos++] = 0x22;
        pos = writeVarint(buf, pos, rawLength);
        buf.set(raw, pos);
        pos += rawLength;
      }
    }
    buf[pos++] = 0x68;
    buf[pos++] = codecValue;
    if (record.generationType !== undefined) {
      buf[pos++] = 0x70;
      pos = writeVarint(buf, pos, record.generationType);
    }
    out[r] = buf.subarray(start, pos);
  }
  return out;
}
