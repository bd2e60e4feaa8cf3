import { FrameError } from './frame-error.js';
import {
  CODEC_12,
  CODEC_16,
  CODEC_8,
  CODEC_8_EXTENDED,
  isAvlCodec,
  type AvlCodecId,
  type AvlIoElement,
  type AvlPacket,
  type AvlRecord,
  type CommandPacket,
} from './types.js';

// The AVL data part shared by TCP and UDP: codec id, Number of Data 1, records, Number of Data 2.
// Decoding checks every bound before reading, so no input makes it throw; the try/catch around it
// is only a safety net that turns a missed bound into a rejected frame.

/** Sizes that differ between the codecs. */
interface Layout {
  /** Bytes of an IO id and of the event IO id. */
  idBytes: 1 | 2;
  /** Bytes of each IO count (N, N1, N2, N4, N8, NX). */
  countBytes: 1 | 2;
  generationType: boolean;
  variableLength: boolean;
}

const LAYOUTS: Record<AvlCodecId, Layout> = {
  [CODEC_8]: { idBytes: 1, countBytes: 1, generationType: false, variableLength: false },
  [CODEC_8_EXTENDED]: { idBytes: 2, countBytes: 2, generationType: false, variableLength: true },
  [CODEC_16]: { idBytes: 2, countBytes: 1, generationType: true, variableLength: false },
};

const FIXED_WIDTHS: readonly (1 | 2 | 4 | 8)[] = [1, 2, 4, 8];

/** GNSS part of a record: timestamp 8, priority 1, lon 4, lat 4, altitude 2, angle 2, satellites 1, speed 2. */
const RECORD_HEADER_BYTES = 24;

function readUint(buf: Buffer, pos: number, bytes: 1 | 2): number {
  return bytes === 1 ? buf.readUInt8(pos) : buf.readUInt16BE(pos);
}

/**
 * Decodes AVL data in `buf[start, end)` (codec id through Number of Data 2). Returns the packet, or
 * the FrameError saying why it was rejected. Never throws.
 */
export function decodeAvlData(buf: Buffer, start: number, end: number): AvlPacket | FrameError {
  try {
    return decodeUnchecked(buf, start, end);
  } catch (err) {
    return new FrameError('malformed_record', `AVL data could not be decoded: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function decodeUnchecked(buf: Buffer, start: number, end: number): AvlPacket | FrameError {
  if (end - start < 3) return new FrameError('bad_length', `AVL data of ${end - start} bytes is shorter than codec id and two counts`);
  const codec = buf.readUInt8(start);
  if (!isAvlCodec(codec)) return new FrameError('unknown_codec', `unknown codec id 0x${codec.toString(16).padStart(2, '0')}`);
  const count = buf.readUInt8(start + 1);
  const count2 = buf.readUInt8(end - 1);
  if (count !== count2) return new FrameError('count_mismatch', `Number of Data 1 (${count}) differs from Number of Data 2 (${count2})`);
  const layout = LAYOUTS[codec];
  const limit = end - 1;
  const records: AvlRecord[] = new Array<AvlRecord>(count);
  let pos = start + 2;
  for (let r = 0; r < count; r++) {
    if (pos + RECORD_HEADER_BYTES > limit) return recordOverrun(r, count);
    const timestampMs = buf.readUInt32BE(pos) * 0x1_0000_0000 + buf.readUInt32BE(pos + 4);
    const priority = buf.readUInt8(pos + 8);
    const lonE7 = buf.readInt32BE(pos + 9);
    const latE7 = buf.readInt32BE(pos + 13);
    const altitudeM = buf.readInt16BE(pos + 17);
    const headingDeg = buf.readUInt16BE(pos + 19);
    const satellites = buf.readUInt8(pos + 21);
    const speedKmh = buf.readUInt16BE(pos + 22);
    pos += RECORD_HEADER_BYTES;

    const { idBytes, countBytes } = layout;
    const headBytes = idBytes + (layout.generationType ? 1 : 0) + countBytes;
    if (pos + headBytes > limit) return recordOverrun(r, count);
    const eventIoId = readUint(buf, pos, idBytes);
    pos += idBytes;
    let generationType: number | undefined;
    if (layout.generationType) generationType = buf.readUInt8(pos++);
    pos += countBytes; // N, the total: implied by the per-width counts, which are what is parsed

    const io: AvlIoElement[] = [];
    for (const width of FIXED_WIDTHS) {
      if (pos + countBytes > limit) return recordOverrun(r, count);
      const n = readUint(buf, pos, countBytes);
      pos += countBytes;
      const elementBytes = idBytes + width;
      if (pos + n * elementBytes > limit) return recordOverrun(r, count);
      for (let i = 0; i < n; i++) {
        const id = readUint(buf, pos, idBytes);
        pos += idBytes;
        let value: bigint;
        if (width === 1) value = BigInt(buf.readUInt8(pos));
        else if (width === 2) value = BigInt(buf.readUInt16BE(pos));
        else if (width === 4) value = BigInt(buf.readUInt32BE(pos));
        else value = buf.readBigUInt64BE(pos);
        pos += width;
        io.push({ id, width, value, raw: undefined });
      }
    }
    if (layout.variableLength) {
      if (pos + 2 > limit) return recordOverrun(r, count);
      const n = buf.readUInt16BE(pos);
      pos += 2;
      for (let i = 0; i < n; i++) {
        if (pos + 4 > limit) return recordOverrun(r, count);
        const id = buf.readUInt16BE(pos);
        const length = buf.readUInt16BE(pos + 2);
        pos += 4;
        if (pos + length > limit) return recordOverrun(r, count);
        io.push({ id, width: 0, value: 0n, raw: new Uint8Array(buf.subarray(pos, pos + length)) });
        pos += length;
      }
    }
    records[r] = { timestampMs, priority, latE7, lonE7, altitudeM, headingDeg, satellites, speedKmh, eventIoId, generationType, io };
  }
  if (pos !== limit) return new FrameError('malformed_record', `${limit - pos} bytes left over after ${count} records`);
  return { codec, records };
}

function recordOverrun(index: number, count: number): FrameError {
  return new FrameError('malformed_record', `record ${index + 1} of ${count} runs past the end of the AVL data`);
}

/** Decodes a Codec 12 frame's data in `buf[start, end)`. Never throws. */
export function decodeCommandData(buf: Buffer, start: number, end: number): CommandPacket | FrameError {
  if (end - start < 3) return new FrameError('bad_length', `Codec 12 data of ${end - start} bytes is too short`);
  if (buf.readUInt8(start) !== CODEC_12) return new FrameError('unknown_codec', 'not a Codec 12 frame');
  const count = buf.readUInt8(start + 1);
  const count2 = buf.readUInt8(end - 1);
  if (count !== count2) return new FrameError('count_mismatch', `Codec 12 quantity 1 (${count}) differs from quantity 2 (${count2})`);
  const limit = end - 1;
  let pos = start + 2;
  let type = 0;
  const messages: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (pos + 5 > limit) return new FrameError('malformed_record', `Codec 12 message ${i + 1} of ${count} runs past the data`);
    type = buf.readUInt8(pos);
    const size = buf.readUInt32BE(pos + 1);
    pos += 5;
    if (size > limit - pos) return new FrameError('malformed_record', `Codec 12 message ${i + 1} of ${count} runs past the data`);
    messages.push(Buffer.from(buf.subarray(pos, pos + size)));
    pos += size;
  }
  if (pos !== limit) return new FrameError('malformed_record', `${limit - pos} bytes left over after ${count} Codec 12 messages`);
  return { codec: CODEC_12, type, messages };
}

// ---- encoding (simulator, tests, benchmarks) ----

function encodedRecordSize(codec: AvlCodecId, record: AvlRecord): number {
  const { idBytes, countBytes, generationType, variableLength } = LAYOUTS[codec];
  let size = RECORD_HEADER_BYTES + idBytes + (generationType ? 1 : 0) + countBytes + 4 * countBytes;
  if (variableLength) size += 2;
  for (const element of record.io) {
    if (element.width === 0) {
      if (!variableLength) throw new RangeError(`codec 0x${codec.toString(16)} has no variable-length IO elements`);
      size += 4 + (element.raw?.length ?? 0);
    } else {
      size += idBytes + element.width;
    }
  }
  return size;
}

/** Bytes of the AVL data (codec id through Number of Data 2) for `records`. */
export function avlDataSize(codec: AvlCodecId, records: readonly AvlRecord[]): number {
  let size = 3;
  for (const record of records) size += encodedRecordSize(codec, record);
  return size;
}

function writeUint(buf: Buffer, pos: number, bytes: 1 | 2, value: number): number {
  if (bytes === 1) return buf.writeUInt8(value, pos);
  return buf.writeUInt16BE(value, pos);
}

/**
 * Writes the AVL data of `records` into `buf` at `pos`; returns the position after it. IO elements
 * are grouped by width on the wire (1, 2, 4, 8, NX), keeping their relative order. Throws RangeError
 * for values that do not fit the codec.
 */
export function writeAvlData(buf: Buffer, pos: number, codec: AvlCodecId, records: readonly AvlRecord[]): number {
  if (records.length > 255) throw new RangeError('at most 255 records fit one packet');
  const { idBytes, countBytes, generationType, variableLength } = LAYOUTS[codec];
  buf.writeUInt8(codec, pos++);
  buf.writeUInt8(records.length, pos++);
  for (const record of records) {
    const hi = Math.floor(record.timestampMs / 0x1_0000_0000);
    buf.writeUInt32BE(hi, pos);
    buf.writeUInt32BE(record.timestampMs - hi * 0x1_0000_0000, pos + 4);
    buf.writeUInt8(record.priority, pos + 8);
    buf.writeInt32BE(record.lonE7, pos + 9);
    buf.writeInt32BE(record.latE7, pos + 13);
    buf.writeInt16BE(record.altitudeM, pos + 17);
    buf.writeUInt16BE(record.headingDeg, pos + 19);
    buf.writeUInt8(record.satellites, pos + 21);
    buf.writeUInt16BE(record.speedKmh, pos + 22);
    pos += RECORD_HEADER_BYTES;
    pos = writeUint(buf, pos, idBytes, record.eventIoId);
    if (generationType) pos = buf.writeUInt8(record.generationType ?? 0, pos);
    pos = writeUint(buf, pos, countBytes, record.io.length);
    for (const width of FIXED_WIDTHS) {
      const elements = record.io.filter((e) => e.width === width);
      pos = writeUint(buf, pos, countBytes, elements.length);
      for (const element of elements) {
        pos = writeUint(buf, pos, idBytes, element.id);
        if (width === 8) pos = buf.writeBigUInt64BE(element.value, pos);
        else pos = buf.writeUIntBE(Number(element.value), pos, width);
      }
    }
    if (variableLength) {
      const elements = record.io.filter((e) => e.width === 0);
      pos = buf.writeUInt16BE(elements.length, pos);
      for (const element of elements) {
        const raw = element.raw ?? new Uint8Array(0);
        pos = buf.writeUInt16BE(element.id, pos);
        pos = buf.writeUInt16BE(raw.length, pos);
        buf.set(raw, pos);
        pos += raw.length;
      }
    }
  }
  buf.writeUInt8(records.length, pos++);
  return pos;
}

/** The AVL data of `records` as a new Buffer. */
export function encodeAvlData(codec: AvlCodecId, records: readonly AvlRecord[]): Buffer {
  const buf = Buffer.allocUnsafe(avlDataSize(codec, records));
  writeAvlData(buf, 0, codec, records);
  return buf;
}
