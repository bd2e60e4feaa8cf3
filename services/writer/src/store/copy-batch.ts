import { Codec, IMEI_MAX_DIGITS, IMEI_MIN_DIGITS, PositionReader, SAFE_HIGH_LIMIT } from '@pitwall/contract';
import { valueProblem, type PositionRow } from './position-row.js';

// A batch of positions encoded once, straight into PostgreSQL's binary COPY format
// (https://www.postgresql.org/docs/current/sql-copy.html): the server parses no text, and the writer
// builds no intermediate strings. The fast path reads the Position wire format in place with the
// contract's PositionReader (services/contract/src/position-reader.ts, the one owner of that format
// beside the .proto) and writes its fields directly into a tuple: the reflective decoder of
// @bufbuild/protobuf plus JSON.stringify cost several times more CPU per entry than COPY itself.
// The fast path handles only the plain case: anything the reader does not expect, or a value that
// fails validation, makes it write nothing and return false, and the caller takes the contract's
// decoder (decodeEntryFields + toPositionRow), which yields the same row or the precise error. Tests
// decode the same bytes both ways (here and in contract/test/position-wire.test.ts, the schema pin).

/** One row of a batch: what the writer needs to know of it, and where its tuple is. */
export interface BatchRow {
  deviceId: string;
  recordedAtMs: number;
  /** The tuple's bytes in the batch's copyData: [start, end). */
  start: number;
  end: number;
}

/**
 * A batch ready for COPY ... FROM STDIN (FORMAT binary): header, one tuple per row, trailer. What the
 * writer knows of each row is kept by column, not as an object per row: a batch lives through its
 * transaction and its acknowledgement, and thousands of small objects per batch made every young
 * generation collection copy them.
 */
export interface EncodedBatch {
  readonly length: number;
  readonly copyData: Buffer;
  /** Per row: its device id, recorded_at in ms, and its tuple's bytes in copyData [start, end). */
  readonly deviceIds: readonly string[];
  readonly recordedAtMs: Float64Array;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
}

/** Every row of a batch as objects (tests). */
export function batchRows(batch: EncodedBatch): BatchRow[] {
  return Array.from({ length: batch.length }, (_, i) => ({
    deviceId: batch.deviceIds[i] as string,
    recordedAtMs: batch.recordedAtMs[i] as number,
    start: batch.starts[i] as number,
    end: batch.ends[i] as number,
  }));
}

/** A typed array twice as long holding the same values first. */
function doubled<T extends Float64Array | Uint32Array | Int32Array>(a: T, make: (n: number) => T): T {
  const next = make(a.length * 2);
  next.set(a);
  return next;
}

const HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]); // signature, flags, extension length
const TRAILER = Buffer.from([0xff, 0xff]);
const FIELD_COUNT = 10;
/** PostgreSQL's epoch (2000-01-01) in Unix ms: binary timestamps count microseconds from it. */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_POW_32 = 4_294_967_296;
const JSONB_VERSION = 1;
/** A tuple without its device id and attributes: field count, ten lengths, fixed-width values, jsonb version. */
const FIXED_TUPLE_BYTES = 2 + FIELD_COUNT * 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 2 + 1;
/** Attributes without IO elements, with the longest codec and generation type. */
const ATTRIBUTES_BASE_BYTES = 160;
/** One fixed-size IO element at most: "4294967295":"18446744073709551615", */
const IO_ELEMENT_MAX_BYTES = 40;

const ascii = (text: string) => Buffer.from(text, 'latin1');
const PRIORITY = ascii('{"priority":');
const EVENT_IO_ID = ascii(',"event_io_id":');
const CODEC = ascii(',"codec":');
const IO_OPEN = ascii(',"io":{');
const IO_NX_OPEN = ascii('},"io_nx":{');
const GENERATION_TYPE = ascii('},"generation_type":');
const CODEC_NAMES = new Map<number, Buffer>();
for (const value of Object.values(Codec)) if (typeof value === 'number') CODEC_NAMES.set(value, ascii(JSON.stringify(Codec[value])));
const HEX = ascii('0123456789abcdef');

const enum Char {
  Quote = 0x22,
  Comma = 0x2c,
  Minus = 0x2d,
  Zero = 0x30,
  Colon = 0x3a,
  Close = 0x7d,
}

// The contract's in-place Position decoder: one for the module, reused by every row (no allocation per entry).
const reader = new PositionReader();
const digits = new Uint8Array(24);

/** IO ids below this (Codec 8E's are 2 bytes) have their `"<id>":` bytes cached. */
const IO_KEY_CACHE_LIMIT = 65_536;
const ioKeys: (Buffer | undefined)[] = [];
/** Device ids of 15 digits by their value: a fleet repeats the same few thousand in every batch. */
const imeis = new Map<number, string>();
const IMEI_CACHE_LIMIT = 100_000;
/** Longest id whose decimal value is exact in a double (below 2^53): cached by that value. */
const CACHED_IMEI_DIGITS = 15;

/**
 * The device id in bytes [start, end) when it is an IMEI (the contract's isImei: IMEI_MIN_DIGITS to
 * IMEI_MAX_DIGITS ASCII digits), else undefined. Checked on the bytes, and the string of a 15-digit
 * one comes from a cache instead of a new allocation per row.
 */
function imeiAt(bytes: Buffer, start: number, end: number): string | undefined {
  const length = end - start;
  if (length < IMEI_MIN_DIGITS || length > IMEI_MAX_DIGITS) return undefined;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = (bytes[i] as number) - Char.Zero;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  if (length !== CACHED_IMEI_DIGITS) return bytes.toString('latin1', start, end);
  let imei = imeis.get(value);
  if (imei === undefined) {
    if (imeis.size >= IMEI_CACHE_LIMIT) imeis.clear();
    imei = bytes.toString('latin1', start, end);
    imeis.set(value, imei);
  }
  return imei;
}

/** Builds one EncodedBatch; use once (finish() ends it). */
export class CopyBatchBuilder {
  private buf: Buffer;
  private o: number;
  private rows = 0;
  private readonly deviceIds: string[] = [];
  private recordedAtMs: Float64Array;
  private starts: Int32Array;
  private ends: Int32Array;

  /** `capacity`: bytes to start with; `expectedRows`: rows to make room for at once (both grow). */
  constructor(capacity = 64 * 1024, expectedRows = 256) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, HEADER.length + TRAILER.length));
    this.o = HEADER.copy(this.buf, 0);
    const rows = Math.max(expectedRows, 1);
    this.recordedAtMs = new Float64Array(rows);
    this.starts = new Int32Array(rows);
    this.ends = new Int32Array(rows);
  }

  get length(): number {
    return this.rows;
  }

  /**
   * Decodes the protobuf bytes of a Position straight into a tuple. False, with nothing written, when
   * the bytes or values are anything but plain: then decode with the contract's decoder and addRow.
   * The Position is bytes[start, end) (by default all of them): read in place, e.g. in a stream reply.
   */
  addPositionBytes(bytes: Buffer, nowMs: number, start = 0, end = bytes.length): boolean {
    if (!reader.read(bytes, start, end)) return false;
    const idStart = reader.deviceIdStart;
    const idEnd = reader.deviceIdEnd;
    const recordedAtMs = reader.recordedAtMs;
    const receivedAtMs = reader.receivedAtMs;
    const headingDeg = reader.headingDeg;
    const satellites = reader.satellites;
    const codec = reader.codec;
    const generationType = reader.generationType;
    const ioCount = reader.ioCount;
    const nxCount = reader.nxCount;
    const nxBytes = reader.nxBytes;
    const { ioId, ioWidth, ioLo, ioHi, ioRawStart, ioRawEnd } = reader;
    const deviceId = imeiAt(bytes, idStart, idEnd);
    if (deviceId === undefined) return false;
    const received = receivedAtMs === 0 ? null : receivedAtMs;
    const lat = reader.latE7 / 1e7;
    const lon = reader.lonE7 / 1e7;
    if (valueProblem(recordedAtMs, received, lat, lon, headingDeg, satellites, nowMs) !== undefined) return false;

    // A valid IMEI is ASCII digits: its byte length is its string length.
    this.ensure(FIXED_TUPLE_BYTES + (idEnd - idStart) + ATTRIBUTES_BASE_BYTES + ioCount * IO_ELEMENT_MAX_BYTES + 2 * nxBytes);
    const tupleStart = this.o;
    this.writeFixedColumns(idEnd - idStart, recordedAtMs, received, lat, lon, reader.altitudeM, reader.speedKmh, headingDeg, satellites);
    const lengthAt = this.o;
    this.o += 4;
    this.buf[this.o++] = JSONB_VERSION;
    this.writeConst(PRIORITY);
    this.writeUint(reader.priority);
    this.writeConst(EVENT_IO_ID);
    this.writeUint(reader.eventIoId);
    this.writeConst(CODEC);
    const codecName = CODEC_NAMES.get(codec);
    if (codecName) this.writeConst(codecName);
    else this.writeInt(codec);
    this.writeConst(IO_OPEN);
    let first = true;
    for (let i = 0; i < ioCount; i++) {
      if (ioWidth[i] === 0) continue;
      if (!first) this.buf[this.o++] = Char.Comma;
      first = false;
      this.writeKey(ioId[i] as number);
      const high = ioHi[i] as number;
      if (high < SAFE_HIGH_LIMIT) {
        this.writeUint(high * TWO_POW_32 + (ioLo[i] as number));
      } else {
        this.buf[this.o++] = Char.Quote;
        this.o += this.buf.write(((BigInt(high) << 32n) | BigInt(ioLo[i] as number)).toString(), this.o, 'latin1');
        this.buf[this.o++] = Char.Quote;
      }
    }
    if (nxCount > 0) {
      this.writeConst(IO_NX_OPEN);
      first = true;
      for (let i = 0; i < ioCount; i++) {
        if (ioWidth[i] !== 0) continue;
        if (!first) this.buf[this.o++] = Char.Comma;
        first = false;
        this.writeKey(ioId[i] as number);
        this.buf[this.o++] = Char.Quote;
        for (let b = ioRawStart[i] as number; b < (ioRawEnd[i] as number); b++) {
          const byte = bytes[b] as number;
          this.buf[this.o++] = HEX[byte >> 4] as number;
          this.buf[this.o++] = HEX[byte & 15] as number;
        }
        this.buf[this.o++] = Char.Quote;
      }
    }
    if (generationType >= 0) {
      this.writeConst(GENERATION_TYPE);
      this.writeUint(generationType);
    } else {
      this.buf[this.o++] = Char.Close;
    }
    this.buf[this.o++] = Char.Close;
    this.buf.writeInt32BE(this.o - lengthAt - 4, lengthAt);
    this.pushRow(deviceId, recordedAtMs, tupleStart);
    return true;
  }

  /** Adds a row decoded and validated by the contract's path (toPositionRow). */
  addRow(row: PositionRow): void {
    const idBytes = Buffer.byteLength(row.deviceId, 'utf8');
    const attributeBytes = Buffer.byteLength(row.attributes, 'utf8');
    this.ensure(FIXED_TUPLE_BYTES + idBytes + attributeBytes);
    const start = this.o;
    this.writeFixedColumns(
      row.deviceId,
      row.recordedAtMs,
      row.receivedAtMs,
      row.lat,
      row.lon,
      row.altitudeM,
      row.speedKmh,
      row.headingDeg,
      row.satellites,
    );
    this.o = this.buf.writeInt32BE(attributeBytes + 1, this.o);
    this.buf[this.o++] = JSONB_VERSION;
    this.o += this.buf.write(row.attributes, this.o, 'utf8');
    this.pushRow(row.deviceId, row.recordedAtMs, start);
  }

  finish(): EncodedBatch {
    // The decoder's source may be a whole stream reply: not kept alive by this module once encoded.
    reader.release();
    this.ensure(TRAILER.length);
    this.o += TRAILER.copy(this.buf, this.o);
    const n = this.rows;
    return {
      length: n,
      copyData: this.buf.subarray(0, this.o),
      deviceIds: this.deviceIds,
      recordedAtMs: this.recordedAtMs.subarray(0, n),
      starts: this.starts.subarray(0, n),
      ends: this.ends.subarray(0, n),
    };
  }

  /** Records the row whose tuple was just written from `start` to the current offset. */
  private pushRow(deviceId: string, recordedAtMs: number, start: number): void {
    const i = this.rows++;
    if (i === this.starts.length) {
      this.recordedAtMs = doubled(this.recordedAtMs, (n) => new Float64Array(n));
      this.starts = doubled(this.starts, (n) => new Int32Array(n));
      this.ends = doubled(this.ends, (n) => new Int32Array(n));
    }
    this.deviceIds.push(deviceId);
    this.recordedAtMs[i] = recordedAtMs;
    this.starts[i] = start;
    this.ends[i] = this.o;
  }

  private ensure(bytes: number): void {
    const needed = this.o + bytes + TRAILER.length;
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.o);
    this.buf = next;
  }

  /**
   * Field count and the nine columns before attributes. The device id is a string (contract path) or
   * the length of its bytes in the reader's last bytes, copied as they are (fast path: validated ASCII digits).
   */
  private writeFixedColumns(
    deviceId: string | number,
    recordedAtMs: number,
    receivedAtMs: number | null,
    lat: number,
    lon: number,
    altitudeM: number,
    speedKmh: number,
    headingDeg: number,
    satellites: number,
  ): void {
    const buf = this.buf;
    let o = buf.writeInt16BE(FIELD_COUNT, this.o);
    let idLength: number;
    if (typeof deviceId === 'number') {
      const bytes = reader.bytes;
      const idFrom = reader.deviceIdStart;
      for (let i = 0; i < deviceId; i++) buf[o + 4 + i] = bytes[idFrom + i] as number;
      idLength = deviceId;
    } else {
      idLength = buf.write(deviceId, o + 4, 'utf8');
    }
    buf.writeInt32BE(idLength, o);
    o += 4 + idLength;
    o = writeTimestamp(buf, o, recordedAtMs);
    o = receivedAtMs === null ? buf.writeInt32BE(-1, o) : writeTimestamp(buf, o, receivedAtMs);
    o = buf.writeInt32BE(8, o);
    o = buf.writeDoubleBE(lat, o);
    o = buf.writeInt32BE(8, o);
    o = buf.writeDoubleBE(lon, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeFloatBE(altitudeM, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeFloatBE(speedKmh, o);
    o = buf.writeInt32BE(4, o);
    o = buf.writeFloatBE(headingDeg, o);
    o = buf.writeInt32BE(2, o);
    this.o = buf.writeInt16BE(satellites, o);
  }

  /** A short constant, byte by byte (Buffer.copy costs more than it saves below a few dozen bytes). */
  private writeConst(bytes: Buffer): void {
    const buf = this.buf;
    let o = this.o;
    for (let i = 0; i < bytes.length; i++) buf[o++] = bytes[i] as number;
    this.o = o;
  }

  /** `"<id>":` */
  private writeKey(id: number): void {
    if (id < IO_KEY_CACHE_LIMIT) {
      let key = ioKeys[id];
      if (key === undefined) {
        key = ascii(`"${id}":`);
        ioKeys[id] = key;
      }
      this.writeConst(key);
      return;
    }
    this.buf[this.o++] = Char.Quote;
    this.writeUint(id);
    this.buf[this.o++] = Char.Quote;
    this.buf[this.o++] = Char.Colon;
  }

  /** A non-negative integer below 2^53 in decimal. */
  private writeUint(value: number): void {
    if (value < 10) {
      this.buf[this.o++] = Char.Zero + value;
      return;
    }
    let n = value;
    let d = 0;
    while (n > 0x7fff_ffff) {
      const q = Math.floor(n / 10);
      digits[d++] = Char.Zero + (n - q * 10);
      n = q;
    }
    // Small integer arithmetic from here on.
    while (n > 0) {
      const q = (n / 10) | 0;
      digits[d++] = Char.Zero + (n - q * 10);
      n = q;
    }
    while (d > 0) this.buf[this.o++] = digits[--d] as number;
  }

  private writeInt(value: number): void {
    if (value < 0) this.buf[this.o++] = Char.Minus;
    this.writeUint(Math.abs(value));
  }
}

function writeTimestamp(buf: Buffer, offset: number, ms: number): number {
  const micros = (ms - PG_EPOCH_MS) * 1000;
  const high = Math.floor(micros / TWO_POW_32);
  buf.writeInt32BE(8, offset);
  buf.writeInt32BE(high, offset + 4);
  buf.writeUInt32BE(micros - high * TWO_POW_32, offset + 8);
  return offset + 12;
}

/** Encodes rows decoded elsewhere (the contract's path, tests, the bench baseline) as a batch. */
export function encodeBatch(rows: readonly PositionRow[]): EncodedBatch {
  const builder = new CopyBatchBuilder(rows.length * 256);
  for (const row of rows) builder.addRow(row);
  return builder.finish();
}

/** Rows [from, to) of a batch as a batch of their own (to isolate a row PostgreSQL rejects). */
export function subBatch(batch: EncodedBatch, from: number, to: number): EncodedBatch {
  const n = Math.max(0, Math.min(to, batch.length) - from);
  const starts = new Int32Array(n);
  const ends = new Int32Array(n);
  const parts: Buffer[] = [HEADER];
  let offset = HEADER.length;
  for (let i = 0; i < n; i++) {
    const start = batch.starts[from + i] as number;
    const end = batch.ends[from + i] as number;
    parts.push(batch.copyData.subarray(start, end));
    starts[i] = offset;
    offset += end - start;
    ends[i] = offset;
  }
  parts.push(TRAILER);
  return {
    length: n,
    copyData: Buffer.concat(parts, offset + TRAILER.length),
    deviceIds: batch.deviceIds.slice(from, from + n),
    recordedAtMs: batch.recordedAtMs.slice(from, from + n),
    starts,
    ends,
  };
}

/** Reads a row back from its tuple (for positions_latest, and tests). */
export function rowFromTuple(copyData: Buffer, row: BatchRow): PositionRow {
  let o = row.start + 2;
  const field = (): [number, number] => {
    const length = copyData.readInt32BE(o);
    const start = o + 4;
    o = start + Math.max(length, 0);
    return [start, length];
  };
  const timestamp = (): number | null => {
    const [at, length] = field();
    if (length < 0) return null;
    return (copyData.readInt32BE(at) * TWO_POW_32 + copyData.readUInt32BE(at + 4)) / 1000 + PG_EPOCH_MS;
  };
  const [idAt, idLength] = field();
  const deviceId = copyData.toString('utf8', idAt, idAt + idLength);
  const recordedAtMs = timestamp() ?? NaN;
  const receivedAtMs = timestamp();
  const lat = copyData.readDoubleBE(field()[0]);
  const lon = copyData.readDoubleBE(field()[0]);
  const altitudeM = copyData.readFloatBE(field()[0]);
  const speedKmh = copyData.readFloatBE(field()[0]);
  const headingDeg = copyData.readFloatBE(field()[0]);
  const satellites = copyData.readInt16BE(field()[0]);
  const [jsonAt, jsonLength] = field();
  const attributes = copyData.toString('utf8', jsonAt + 1, jsonAt + jsonLength);
  return { deviceId, recordedAtMs, receivedAtMs, lat, lon, altitudeM, speedKmh, headingDeg, satellites, attributes };
}
