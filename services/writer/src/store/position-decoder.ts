import { Codec } from '@pitwall/contract';
import { checkPositionRow, type PositionRow } from './position-row.js';

// A hand-written decoder of the Position wire format (proto/pitwall/telemetry/v1/position.proto)
// straight into a row, for the hot path: the reflective decoder of @bufbuild/protobuf spends most of
// the writer's CPU per entry (see `make bench`). It only ever handles the plain case: anything it
// does not expect (a field of the wrong wire type, a group, truncated bytes, a timestamp beyond
// 2^53 ms, a value that fails validation) makes it return undefined, and the caller takes the
// contract's decoder (decodeEntryFields + toPositionRow), which yields the same row or the precise
// error. A test decodes the same bytes both ways and checks the schema still has these fields.

const CODEC_JSON: Record<number, string> = {};
for (const value of Object.values(Codec)) if (typeof value === 'number') CODEC_JSON[value] = JSON.stringify(Codec[value]);

const TWO_POW_32 = 4_294_967_296;
/** High word of a varint above which its value exceeds Number.MAX_SAFE_INTEGER. */
const SAFE_HIGH_LIMIT = 0x20_0000;

// Decoder state, module-level so the hot loop allocates nothing but the row and its strings.
let buf: Buffer = Buffer.alloc(0);
let pos = 0;
let lo = 0;
let hi = 0;

/** Reads a varint into lo/hi (unsigned 32-bit words); false when truncated or longer than 10 bytes. */
function readVarint(end: number): boolean {
  let b: number;
  lo = 0;
  hi = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) return false;
    b = buf[pos++] as number;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) {
      lo >>>= 0;
      return true;
    }
  }
  if (pos >= end) return false;
  b = buf[pos++] as number;
  lo = (lo | ((b & 0x0f) << 28)) >>> 0;
  hi = (b & 0x7f) >> 4;
  if (b < 0x80) return true;
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) return false;
    b = buf[pos++] as number;
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) {
      hi >>>= 0;
      return true;
    }
  }
  return false;
}

/** Skips a field of an unknown number; false for groups and truncated data. */
function skipField(wireType: number, end: number): boolean {
  switch (wireType) {
    case 0:
      return readVarint(end);
    case 1:
      pos += 8;
      return pos <= end;
    case 2:
      if (!readVarint(end) || hi !== 0) return false;
      pos += lo;
      return pos <= end;
    case 5:
      pos += 4;
      return pos <= end;
    default:
      return false;
  }
}

/** Reads the length of a length-delimited field; returns its end, or -1. */
function readLength(end: number): number {
  if (!readVarint(end) || hi !== 0) return -1;
  const stop = pos + lo;
  return stop <= end ? stop : -1;
}

function hex(start: number, stop: number): string {
  let out = '';
  for (let i = start; i < stop; i++) out += ((buf[i] as number) < 16 ? '0' : '') + (buf[i] as number).toString(16);
  return out;
}

/** One IoElement in [pos, stop): appends `"id":value` to io or `"id":"hex"` to nx; false when unexpected. */
let ioJson = '';
let nxJson = '';
function readIoElement(stop: number): boolean {
  let id = 0;
  let width = 0;
  let valueLo = 0;
  let valueHi = 0;
  let rawStart = 0;
  let rawStop = 0;
  while (pos < stop) {
    if (!readVarint(stop)) return false;
    const field = lo >>> 3;
    const wireType = lo & 7;
    if (hi !== 0 || field === 0) return false;
    if (field === 1 && wireType === 0) {
      if (!readVarint(stop)) return false;
      id = lo;
    } else if (field === 2 && wireType === 0) {
      if (!readVarint(stop)) return false;
      width = lo;
    } else if (field === 3 && wireType === 0) {
      if (!readVarint(stop)) return false;
      valueLo = lo;
      valueHi = hi;
    } else if (field === 4 && wireType === 2) {
      const end = readLength(stop);
      if (end < 0) return false;
      rawStart = pos;
      rawStop = end;
      pos = end;
    } else if (field >= 1 && field <= 4) {
      return false;
    } else if (!skipField(wireType, stop)) {
      return false;
    }
  }
  if (width === 0) {
    nxJson += `${nxJson === '' ? '' : ','}"${id}":"${hex(rawStart, rawStop)}"`;
  } else {
    const value =
      valueHi < SAFE_HIGH_LIMIT ? String(valueHi * TWO_POW_32 + valueLo) : `"${((BigInt(valueHi) << 32n) | BigInt(valueLo)).toString()}"`;
    ioJson += `${ioJson === '' ? '' : ','}"${id}":${value}`;
  }
  return true;
}

/** A signed 64-bit varint (lo/hi) as a number, or NaN beyond the safe range (the slow path decides then). */
function int64(): number {
  return hi < SAFE_HIGH_LIMIT ? hi * TWO_POW_32 + lo : NaN;
}

/**
 * Decodes the protobuf bytes of a Position straight into a valid row; undefined when the bytes or
 * values are anything but plain (then decode with the contract's decoder for the row or the error).
 */
export function decodePositionRow(bytes: Buffer, nowMs: number): PositionRow | undefined {
  buf = bytes;
  pos = 0;
  ioJson = '';
  nxJson = '';
  const end = bytes.length;
  let deviceId = '';
  let recordedAtMs = 0;
  let receivedAtMs = 0;
  let latE7 = 0;
  let lonE7 = 0;
  let altitudeM = 0;
  let speedKmh = 0;
  let headingDeg = 0;
  let satellites = 0;
  let priority = 0;
  let eventIoId = 0;
  let codec = 0;
  let generationType: number | undefined;
  while (pos < end) {
    if (!readVarint(end) || hi !== 0) return undefined;
    const field = lo >>> 3;
    const wireType = lo & 7;
    if (field === 1 || field === 12) {
      if (wireType !== 2) return undefined;
      const stop = readLength(end);
      if (stop < 0) return undefined;
      if (field === 1) {
        deviceId = bytes.toString('latin1', pos, stop);
        pos = stop;
      } else if (!readIoElement(stop)) {
        return undefined;
      }
      continue;
    }
    if (field === 0) return undefined;
    if (field > 14) {
      if (!skipField(wireType, end)) return undefined;
      continue;
    }
    if (wireType !== 0 || !readVarint(end)) return undefined;
    switch (field) {
      case 2:
        recordedAtMs = int64();
        break;
      case 3:
        receivedAtMs = int64();
        break;
      case 4:
        latE7 = (lo >>> 1) ^ -(lo & 1);
        break;
      case 5:
        lonE7 = (lo >>> 1) ^ -(lo & 1);
        break;
      case 6:
        altitudeM = (lo >>> 1) ^ -(lo & 1);
        break;
      case 7:
        speedKmh = lo;
        break;
      case 8:
        headingDeg = lo;
        break;
      case 9:
        satellites = lo;
        break;
      case 10:
        priority = lo;
        break;
      case 11:
        eventIoId = lo;
        break;
      case 13:
        codec = lo | 0;
        break;
      case 14:
        generationType = lo;
        break;
    }
  }
  if (Number.isNaN(recordedAtMs) || Number.isNaN(receivedAtMs)) return undefined;
  const row: PositionRow = {
    deviceId,
    recordedAtMs,
    receivedAtMs: receivedAtMs === 0 ? null : receivedAtMs,
    lat: latE7 / 1e7,
    lon: lonE7 / 1e7,
    altitudeM,
    speedKmh,
    headingDeg,
    satellites,
    attributes: '',
  };
  try {
    checkPositionRow(row, nowMs);
  } catch {
    return undefined;
  }
  row.attributes =
    `{"priority":${priority},"event_io_id":${eventIoId},"codec":${CODEC_JSON[codec] ?? codec},"io":{${ioJson}}` +
    (nxJson === '' ? '' : `,"io_nx":{${nxJson}}`) +
    (generationType === undefined ? '}' : `,"generation_type":${generationType}}`);
  return row;
}
