import { MAX_POSITION_ENTRY_BYTES, MAX_STORED_IO_VALUE_BYTES } from './entry.js';
import type { Codec } from './gen/pitwall/telemetry/v1/position_pb.js';
import {
  fieldTag,
  IO_ID,
  IO_RAW,
  IO_VALUE,
  IO_WIDTH,
  POSITION_ALTITUDE_M,
  POSITION_CODEC,
  POSITION_DEVICE_ID,
  POSITION_EVENT_IO_ID,
  POSITION_GENERATION_TYPE,
  POSITION_HEADING_DEG,
  POSITION_IO,
  POSITION_LAT_E7,
  POSITION_LON_E7,
  POSITION_PRIORITY,
  POSITION_RECEIVED_AT_MS,
  POSITION_RECORDED_AT_MS,
  POSITION_SATELLITES,
  POSITION_SPEED_KMH,
  WIRE_LEN,
  WIRE_VARINT,
} from './position-fields.js';

// The fast Position encoder (ingestion's hot path, and the benches' producers): serialises records as
// `pitwall.telemetry.v1.Position` protobuf, byte for byte what encodePosition (protobuf-es) produces,
// at a small fraction of its cost (~30 us per record there): no intermediate message objects, one
// buffer per packet, the device id field encoded once per device. test/position-wire.test.ts holds
// it to byte equality with encodePosition and pins its field numbers to the generated schema.

/** One IO element as the encoder takes it (a Teltonika AvlIoElement fits). */
export interface PositionIoInput {
  id: number;
  /** 1, 2, 4 or 8; 0 for a variable-length (NX) element. */
  width: number;
  value: bigint;
  raw: Uint8Array | undefined;
}

/** One record as the encoder takes it (a Teltonika AvlRecord fits). */
export interface PositionInput {
  /** Device time, ms since the epoch (non-negative, below 2^53). */
  timestampMs: number;
  priority: number;
  latE7: number;
  lonE7: number;
  altitudeM: number;
  headingDeg: number;
  satellites: number;
  speedKmh: number;
  eventIoId: number;
  generationType: number | undefined;
  io: readonly PositionIoInput[];
}

const TAG_DEVICE_ID = fieldTag(POSITION_DEVICE_ID, WIRE_LEN);
const TAG_RECORDED_AT_MS = fieldTag(POSITION_RECORDED_AT_MS, WIRE_VARINT);
const TAG_RECEIVED_AT_MS = fieldTag(POSITION_RECEIVED_AT_MS, WIRE_VARINT);
const TAG_LAT_E7 = fieldTag(POSITION_LAT_E7, WIRE_VARINT);
const TAG_LON_E7 = fieldTag(POSITION_LON_E7, WIRE_VARINT);
const TAG_ALTITUDE_M = fieldTag(POSITION_ALTITUDE_M, WIRE_VARINT);
const TAG_SPEED_KMH = fieldTag(POSITION_SPEED_KMH, WIRE_VARINT);
const TAG_HEADING_DEG = fieldTag(POSITION_HEADING_DEG, WIRE_VARINT);
const TAG_SATELLITES = fieldTag(POSITION_SATELLITES, WIRE_VARINT);
const TAG_PRIORITY = fieldTag(POSITION_PRIORITY, WIRE_VARINT);
const TAG_EVENT_IO_ID = fieldTag(POSITION_EVENT_IO_ID, WIRE_VARINT);
const TAG_IO = fieldTag(POSITION_IO, WIRE_LEN);
const TAG_CODEC = fieldTag(POSITION_CODEC, WIRE_VARINT);
const TAG_GENERATION_TYPE = fieldTag(POSITION_GENERATION_TYPE, WIRE_VARINT);
const TAG_IO_ID = fieldTag(IO_ID, WIRE_VARINT);
const TAG_IO_WIDTH = fieldTag(IO_WIDTH, WIRE_VARINT);
const TAG_IO_VALUE = fieldTag(IO_VALUE, WIRE_VARINT);
const TAG_IO_RAW = fieldTag(IO_RAW, WIRE_LEN);

/** Field 1 (device_id) of a device, encoded once: tag, length, ASCII IMEI. */
export function deviceIdField(imei: string): Buffer {
  const bytes = Buffer.from(imei, 'utf8');
  const field = Buffer.allocUnsafe(1 + varintSize(bytes.length) + bytes.length);
  field[0] = TAG_DEVICE_ID;
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
function recordBound(record: PositionInput): number {
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
  codec: Codec,
  records: readonly PositionInput[],
  dropped?: DroppedIo,
): Buffer[] {
  let bound = 0;
  for (const record of records) bound += idField.length + recordBound(record);
  const buf = Buffer.allocUnsafe(bound);
  const out: Buffer[] = new Array<Buffer>(records.length);
  let pos = 0;
  for (let r = 0; r < records.length; r++) {
    const record = records[r] as PositionInput;
    const start = pos;
    pos += idField.copy(buf, pos);
    if (record.timestampMs !== 0) {
      buf[pos++] = TAG_RECORDED_AT_MS;
      pos = writeVarint(buf, pos, record.timestampMs);
    }
    if (receivedAtMs !== 0) {
      buf[pos++] = TAG_RECEIVED_AT_MS;
      pos = writeVarint(buf, pos, receivedAtMs);
    }
    if (record.latE7 !== 0) {
      buf[pos++] = TAG_LAT_E7;
      pos = writeVarint(buf, pos, zigzag32(record.latE7));
    }
    if (record.lonE7 !== 0) {
      buf[pos++] = TAG_LON_E7;
      pos = writeVarint(buf, pos, zigzag32(record.lonE7));
    }
    if (record.altitudeM !== 0) {
      buf[pos++] = TAG_ALTITUDE_M;
      pos = writeVarint(buf, pos, zigzag32(record.altitudeM));
    }
    if (record.speedKmh !== 0) {
      buf[pos++] = TAG_SPEED_KMH;
      pos = writeVarint(buf, pos, record.speedKmh);
    }
    if (record.headingDeg !== 0) {
      buf[pos++] = TAG_HEADING_DEG;
      pos = writeVarint(buf, pos, record.headingDeg);
    }
    if (record.satellites !== 0) {
      buf[pos++] = TAG_SATELLITES;
      pos = writeVarint(buf, pos, record.satellites);
    }
    if (record.priority !== 0) {
      buf[pos++] = TAG_PRIORITY;
      pos = writeVarint(buf, pos, record.priority);
    }
    if (record.eventIoId !== 0) {
      buf[pos++] = TAG_EVENT_IO_ID;
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
      buf[pos++] = TAG_IO;
      pos = writeVarint(buf, pos, size);
      if (element.id !== 0) {
        buf[pos++] = TAG_IO_ID;
        pos = writeVarint(buf, pos, element.id);
      }
      if (element.width !== 0) {
        buf[pos++] = TAG_IO_WIDTH;
        buf[pos++] = element.width;
      }
      if (element.value !== 0n) {
        buf[pos++] = TAG_IO_VALUE;
        pos = writeVarint64(buf, pos, element.value);
      }
      if (raw !== undefined && rawLength !== 0) {
        buf[pos++] = TAG_IO_RAW;
        pos = writeVarint(buf, pos, rawLength);
        buf.set(raw, pos);
        pos += rawLength;
      }
    }
    buf[pos++] = TAG_CODEC;
    buf[pos++] = codec;
    if (record.generationType !== undefined) {
      buf[pos++] = TAG_GENERATION_TYPE;
      pos = writeVarint(buf, pos, record.generationType);
    }
    out[r] = buf.subarray(start, pos);
  }
  return out;
}
