import {
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
  POSITION_LAST_FIELD,
  POSITION_LAT_E7,
  POSITION_LON_E7,
  POSITION_PRIORITY,
  POSITION_RECEIVED_AT_MS,
  POSITION_RECORDED_AT_MS,
  POSITION_SATELLITES,
  POSITION_SPEED_KMH,
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LEN,
  WIRE_VARINT,
} from './position-fields.js';

// The fast Position decoder (the writer's hot path): reads the protobuf bytes of a
// `pitwall.telemetry.v1.Position` in place (e.g. inside a whole stream reply) into the fields of one
// reusable PositionReader, without allocating per entry or per field: the reflective decoder of
// @bufbuild/protobuf costs several times more CPU per entry than the writer's COPY itself. It handles
// only the plain case: anything it does not expect (a field of the wrong wire type, a group,
// truncated bytes, a timestamp beyond 2^53 ms) makes read() return false, and the caller takes
// decodePosition / decodeEntryFields, which yields the same values or the precise error.
// test/position-wire.test.ts reads protobuf-es's bytes with it and pins its field numbers to the schema.

const TWO_POW_32 = 4_294_967_296;
/** High word of a varint above which its value exceeds Number.MAX_SAFE_INTEGER. */
export const SAFE_HIGH_LIMIT = 0x20_0000;

// Decoder state, module-level so the hot loop allocates nothing per field.
const NO_BYTES = Buffer.alloc(0);
let src: Buffer = NO_BYTES;
let pos = 0;
let lo = 0;
let hi = 0;

/** A typed array twice as long holding the same values first. */
function doubled<T extends Uint32Array | Int32Array>(a: T, make: (n: number) => T): T {
  const next = make(a.length * 2);
  next.set(a);
  return next;
}

/** Reads a varint into lo/hi (unsigned 32-bit words); false when truncated or longer than 10 bytes. */
function readVarint(end: number): boolean {
  let b: number;
  lo = 0;
  hi = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) return false;
    b = src[pos++] as number;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) {
      lo >>>= 0;
      return true;
    }
  }
  if (pos >= end) return false;
  b = src[pos++] as number;
  lo = (lo | ((b & 0x0f) << 28)) >>> 0;
  hi = (b & 0x7f) >> 4;
  if (b < 0x80) return true;
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) return false;
    b = src[pos++] as number;
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) {
      hi >>>= 0;
      return true;
    }
  }
  return false;
}

/** Skips a field of a number this code does not know; false for groups and truncated data. */
function skipField(wireType: number, end: number): boolean {
  switch (wireType) {
    case WIRE_VARINT:
      return readVarint(end);
    case WIRE_FIXED64:
      pos += 8;
      return pos <= end;
    case WIRE_LEN:
      if (!readVarint(end) || hi !== 0) return false;
      pos += lo;
      return pos <= end;
    case WIRE_FIXED32:
      pos += 4;
      return pos <= end;
    default:
      return false;
  }
}

/** Reads the length of a length-delimited field; returns where it ends, or -1. */
function readLength(end: number): number {
  if (!readVarint(end) || hi !== 0) return -1;
  const stop = pos + lo;
  return stop <= end ? stop : -1;
}

/** A signed 64-bit varint (lo/hi) as a number, or NaN beyond the safe range. */
function int64(): number {
  return hi < SAFE_HIGH_LIMIT ? hi * TWO_POW_32 + lo : NaN;
}

/**
 * The fields of the last Position read(), valid until the next read() of the same reader. Byte
 * ranges ([start, end)) are offsets into `bytes`; IO elements are by column, `ioCount` of them.
 */
export class PositionReader {
  /** The bytes of the last read (release() drops them). */
  bytes: Buffer = NO_BYTES;
  deviceIdStart = 0;
  deviceIdEnd = 0;
  recordedAtMs = 0;
  receivedAtMs = 0;
  latE7 = 0;
  lonE7 = 0;
  altitudeM = 0;
  speedKmh = 0;
  headingDeg = 0;
  satellites = 0;
  priority = 0;
  eventIoId = 0;
  codec = 0;
  /** -1 when absent. */
  generationType = -1;
  ioCount = 0;
  /** Variable-length (width 0) elements among the IO elements, and their raw bytes in all. */
  nxCount = 0;
  nxBytes = 0;
  ioId = new Uint32Array(64);
  ioWidth = new Uint32Array(64);
  /** A fixed-size value as two unsigned 32-bit words. */
  ioLo = new Uint32Array(64);
  ioHi = new Uint32Array(64);
  ioRawStart = new Int32Array(64);
  ioRawEnd = new Int32Array(64);

  /**
   * Decodes the Position in bytes[start, end) (by default all of them), in place. False when the bytes
   * are anything but plain (see above): then decode with decodePosition / decodeEntryFields.
   */
  read(bytes: Buffer, start = 0, end = bytes.length): boolean {
    src = bytes;
    pos = start;
    this.bytes = bytes;
    this.ioCount = 0;
    let idStart = 0;
    let idEnd = 0;
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
    let generationType = -1;
    let nxCount = 0;
    let nxBytes = 0;
    while (pos < end) {
      if (!readVarint(end) || hi !== 0) return false;
      const field = lo >>> 3;
      const wireType = lo & 7;
      if (field === 0) return false;
      if (field === POSITION_DEVICE_ID || field === POSITION_IO) {
        if (wireType !== WIRE_LEN) return false;
        const stop = readLength(end);
        if (stop < 0) return false;
        if (field === POSITION_DEVICE_ID) {
          idStart = pos;
          idEnd = stop;
          pos = stop;
        } else if (!this.readIoElement(stop)) {
          return false;
        } else if (this.ioWidth[this.ioCount - 1] === 0) {
          nxCount++;
          nxBytes += (this.ioRawEnd[this.ioCount - 1] as number) - (this.ioRawStart[this.ioCount - 1] as number);
        }
        continue;
      }
      if (field > POSITION_LAST_FIELD) {
        if (!skipField(wireType, end)) return false;
        continue;
      }
      if (wireType !== WIRE_VARINT || !readVarint(end)) return false;
      switch (field) {
        case POSITION_RECORDED_AT_MS:
          recordedAtMs = int64();
          break;
        case POSITION_RECEIVED_AT_MS:
          receivedAtMs = int64();
          break;
        case POSITION_LAT_E7:
          latE7 = (lo >>> 1) ^ -(lo & 1);
          break;
        case POSITION_LON_E7:
          lonE7 = (lo >>> 1) ^ -(lo & 1);
          break;
        case POSITION_ALTITUDE_M:
          altitudeM = (lo >>> 1) ^ -(lo & 1);
          break;
        case POSITION_SPEED_KMH:
          speedKmh = lo;
          break;
        case POSITION_HEADING_DEG:
          headingDeg = lo;
          break;
        case POSITION_SATELLITES:
          satellites = lo;
          break;
        case POSITION_PRIORITY:
          priority = lo;
          break;
        case POSITION_EVENT_IO_ID:
          eventIoId = lo;
          break;
        case POSITION_CODEC:
          codec = lo | 0;
          break;
        case POSITION_GENERATION_TYPE:
          generationType = lo;
          break;
      }
    }
    if (Number.isNaN(recordedAtMs) || Number.isNaN(receivedAtMs)) return false;
    this.deviceIdStart = idStart;
    this.deviceIdEnd = idEnd;
    this.recordedAtMs = recordedAtMs;
    this.receivedAtMs = receivedAtMs;
    this.latE7 = latE7;
    this.lonE7 = lonE7;
    this.altitudeM = altitudeM;
    this.speedKmh = speedKmh;
    this.headingDeg = headingDeg;
    this.satellites = satellites;
    this.priority = priority;
    this.eventIoId = eventIoId;
    this.codec = codec;
    this.generationType = generationType;
    this.nxCount = nxCount;
    this.nxBytes = nxBytes;
    return true;
  }

  /** Drops the reference to the last bytes read (they may be a whole stream reply). */
  release(): void {
    src = NO_BYTES;
    this.bytes = NO_BYTES;
  }

  private growIoArrays(): void {
    this.ioId = doubled(this.ioId, (n) => new Uint32Array(n));
    this.ioWidth = doubled(this.ioWidth, (n) => new Uint32Array(n));
    this.ioLo = doubled(this.ioLo, (n) => new Uint32Array(n));
    this.ioHi = doubled(this.ioHi, (n) => new Uint32Array(n));
    this.ioRawStart = doubled(this.ioRawStart, (n) => new Int32Array(n));
    this.ioRawEnd = doubled(this.ioRawEnd, (n) => new Int32Array(n));
  }

  /** One IoElement in [pos, stop) into the io arrays; false when unexpected. */
  private readIoElement(stop: number): boolean {
    if (this.ioCount === this.ioId.length) this.growIoArrays();
    const i = this.ioCount;
    this.ioId[i] = 0;
    this.ioWidth[i] = 0;
    this.ioLo[i] = 0;
    this.ioHi[i] = 0;
    this.ioRawStart[i] = 0;
    this.ioRawEnd[i] = 0;
    while (pos < stop) {
      if (!readVarint(stop) || hi !== 0) return false;
      const field = lo >>> 3;
      const wireType = lo & 7;
      if (field === 0) return false;
      if (field === IO_RAW) {
        if (wireType !== WIRE_LEN) return false;
        const end = readLength(stop);
        if (end < 0) return false;
        this.ioRawStart[i] = pos;
        this.ioRawEnd[i] = end;
        pos = end;
      } else if (field <= IO_VALUE) {
        if (wireType !== WIRE_VARINT || !readVarint(stop)) return false;
        if (field === IO_ID) this.ioId[i] = lo;
        else if (field === IO_WIDTH) this.ioWidth[i] = lo;
        else {
          this.ioLo[i] = lo;
          this.ioHi[i] = hi;
        }
      } else if (!skipField(wireType, stop)) {
        return false;
      }
    }
    this.ioCount++;
    return true;
  }
}
