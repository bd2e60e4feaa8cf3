import { create, fromBinary, toBinary, ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import {
  Codec,
  deviceIdField,
  encodePositions,
  IO_ELEMENT_FIELDS,
  IoElementSchema,
  POSITION_FIELDS,
  POSITION_LAST_FIELD,
  PositionReader,
  PositionSchema,
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LEN,
  WIRE_VARINT,
  type Position,
  type PositionInput,
  type PositionIoInput,
} from '@pitwall/contract';
import { loadVectors } from '../../teltonika/test/vectors.js';

// The schema pin of the hand-written Position wire format (position-fields.ts, position-encoder.ts):
// its field numbers and wire types are exactly the generated descriptor's, and its bytes are what
// protobuf-es reads and writes, over Teltonika's documented vectors and random positions.

/** The wire type protobuf gives a field of the descriptor. */
function wireTypeOf(field: DescField): number {
  if (field.fieldKind === 'message' || field.fieldKind === 'list' || field.fieldKind === 'map') return WIRE_LEN;
  if (field.fieldKind === 'enum') return WIRE_VARINT;
  switch (field.scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WIRE_LEN;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WIRE_FIXED64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WIRE_FIXED32;
    default:
      return WIRE_VARINT;
  }
}

function schemaFields(schema: DescMessage): Record<string, [number, number]> {
  return Object.fromEntries(schema.fields.map((f) => [f.localName, [f.number, wireTypeOf(f)]]));
}

/** xorshift32: the same random positions on every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4_294_967_296;
  };
}

const WIDTHS = [0, 1, 2, 4, 8] as const;

function randomInput(rand: () => number, codec: Codec): PositionInput {
  const int = (max: number) => Math.floor(rand() * max);
  const signed = (max: number) => int(2 * max + 1) - max;
  const sometimesZero = (n: number) => (rand() < 0.15 ? 0 : n);
  const io: PositionIoInput[] = Array.from({ length: int(8) }, () => {
    const width = WIDTHS[int(WIDTHS.length)] as number;
    if (width === 0) return { id: int(65_536), width, value: 0n, raw: Uint8Array.from({ length: 1 + int(40) }, () => int(256)) };
    const bits = BigInt(width * 8);
    const value = BigInt(int(2 ** 30)) * BigInt(int(2 ** 30)) * BigInt(1 + int(16));
    return {
      id: sometimesZero(int(codec === Codec.CODEC_8 ? 256 : 65_536)),
      width,
      value: rand() < 0.1 ? 0n : value % (1n << bits),
      raw: undefined,
    };
  });
  return {
    timestampMs: sometimesZero(1_500_000_000_000 + int(2 ** 40)),
    priority: int(3),
    latE7: sometimesZero(signed(900_000_000)),
    lonE7: sometimesZero(signed(1_800_000_000)),
    altitudeM: sometimesZero(signed(32_768)),
    headingDeg: sometimesZero(int(361)),
    satellites: sometimesZero(int(32)),
    speedKmh: sometimesZero(int(65_536)),
    eventIoId: sometimesZero(int(65_536)),
    generationType: codec === Codec.CODEC_16 ? int(8) : undefined,
    io,
  };
}

/** The same record as a protobuf-es message. */
function message(deviceId: string, receivedAtMs: number, codec: Codec, input: PositionInput): Position {
  return create(PositionSchema, {
    deviceId,
    recordedAtMs: BigInt(input.timestampMs),
    receivedAtMs: BigInt(receivedAtMs),
    latE7: input.latE7,
    lonE7: input.lonE7,
    altitudeM: input.altitudeM,
    speedKmh: input.speedKmh,
    headingDeg: input.headingDeg,
    satellites: input.satellites,
    priority: input.priority,
    eventIoId: input.eventIoId,
    io: input.io.map((e) => ({ id: e.id, width: e.width, value: e.value, raw: e.raw ?? new Uint8Array(0) })),
    codec,
    generationType: input.generationType,
  });
}

/** Teltonika's documented example records (services/teltonika's copy of the shared vectors), as encoder input. */
function vectorInputs(): { codec: Codec; input: PositionInput }[] {
  const file = loadVectors();
  const codecs: Record<string, Codec> = { '0x8': Codec.CODEC_8, '0x8e': Codec.CODEC_8_EXTENDED, '0x10': Codec.CODEC_16 };
  return file.vectors.flatMap((v) =>
    v.records.map((r) => ({
      codec: codecs[v.codec_id ?? '0x8'] ?? Codec.CODEC_8,
      input: {
        timestampMs: r.timestamp_ms,
        priority: r.priority,
        latE7: Math.round(r.lat * 1e7),
        lonE7: Math.round(r.lon * 1e7),
        altitudeM: r.altitude_m,
        headingDeg: r.heading_deg,
        satellites: r.satellites,
        speedKmh: r.speed_kmh,
        eventIoId: r.event_io_id,
        generationType: r.generation_type ?? undefined,
        io: Object.entries(r.io).map(([id, value]) => ({ id: Number(id), width: 8, value: BigInt(value), raw: undefined })),
      },
    })),
  );
}

function cases(): { deviceId: string; receivedAtMs: number; codec: Codec; input: PositionInput }[] {
  const out = vectorInputs().map((v, i) => ({ deviceId: '356307042441013', receivedAtMs: i === 0 ? 0 : 1_700_000_000_000 + i, ...v }));
  const rand = prng(15);
  for (let n = 0; n < 600; n++) {
    const codec = [Codec.CODEC_8, Codec.CODEC_8_EXTENDED, Codec.CODEC_16][n % 3] as Codec;
    out.push({
      deviceId: String(356307040000000 + n),
      receivedAtMs: n % 7 === 0 ? 0 : 1_700_000_000_000 + n,
      codec,
      input: randomInput(rand, codec),
    });
  }
  return out;
}

describe('the Position wire format of the fast paths', () => {
  it('knows exactly the fields of the generated schema, by number and wire type', () => {
    expect(POSITION_FIELDS).toEqual(schemaFields(PositionSchema));
    expect(IO_ELEMENT_FIELDS).toEqual(schemaFields(IoElementSchema));
    expect(POSITION_LAST_FIELD).toBe(Math.max(...PositionSchema.fields.map((f) => f.number)));
    // The encoder writes every tag as one byte: field numbers below 16.
    for (const [field] of [...Object.values(POSITION_FIELDS), ...Object.values(IO_ELEMENT_FIELDS)]) expect(field).toBeLessThan(16);
    // Scalar types too: the fast paths zigzag the sint32 fields and read int64/uint64 as two words.
    const types = (schema: DescMessage) =>
      schema.fields.map((f) => `${f.number}:${f.name}:${f.fieldKind}${f.fieldKind === 'scalar' ? `:${ScalarType[f.scalar]}` : ''}`);
    expect(types(PositionSchema)).toEqual([
      '1:device_id:scalar:STRING',
      '2:recorded_at_ms:scalar:INT64',
      '3:received_at_ms:scalar:INT64',
      '4:lat_e7:scalar:SINT32',
      '5:lon_e7:scalar:SINT32',
      '6:altitude_m:scalar:SINT32',
      '7:speed_kmh:scalar:UINT32',
      '8:heading_deg:scalar:UINT32',
      '9:satellites:scalar:UINT32',
      '10:priority:scalar:UINT32',
      '11:event_io_id:scalar:UINT32',
      '12:io:list',
      '13:codec:enum',
      '14:generation_type:scalar:UINT32',
    ]);
    expect(types(IoElementSchema)).toEqual(['1:id:scalar:UINT32', '2:width:scalar:UINT32', '3:value:scalar:UINT64', '4:raw:scalar:BYTES']);
  });

  it('encodes (encodePositions) byte for byte what protobuf-es toBinary does, and fromBinary reads it back', () => {
    const all = cases();
    expect(all.length).toBeGreaterThan(600);
    for (const c of all) {
      const [bytes] = encodePositions(deviceIdField(c.deviceId), c.receivedAtMs, c.codec, [c.input]);
      const want = message(c.deviceId, c.receivedAtMs, c.codec, c.input);
      expect(Buffer.from(bytes ?? []).toString('hex')).toBe(Buffer.from(toBinary(PositionSchema, want)).toString('hex'));
      expect(fromBinary(PositionSchema, new Uint8Array(bytes ?? []))).toEqual(want);
    }
  });
});

/** What PositionReader read, as a protobuf-es message (to compare with what fromBinary reads). */
function readBack(reader: PositionReader): Position {
  const bytes = reader.bytes;
  return create(PositionSchema, {
    deviceId: bytes.toString('utf8', reader.deviceIdStart, reader.deviceIdEnd),
    recordedAtMs: BigInt(reader.recordedAtMs),
    receivedAtMs: BigInt(reader.receivedAtMs),
    latE7: reader.latE7,
    lonE7: reader.lonE7,
    altitudeM: reader.altitudeM,
    speedKmh: reader.speedKmh,
    headingDeg: reader.headingDeg,
    satellites: reader.satellites,
    priority: reader.priority,
    eventIoId: reader.eventIoId,
    io: Array.from({ length: reader.ioCount }, (_, i) => ({
      id: reader.ioId[i] as number,
      width: reader.ioWidth[i] as number,
      value: (BigInt(reader.ioHi[i] as number) << 32n) | BigInt(reader.ioLo[i] as number),
      raw: new Uint8Array(bytes.subarray(reader.ioRawStart[i] as number, reader.ioRawEnd[i] as number)),
    })),
    codec: reader.codec,
    generationType: reader.generationType < 0 ? undefined : reader.generationType,
  });
}

/** What precedes field p's value in a stream reply (any bytes would do). */
const PREFIX = Buffer.from('*2\r\n$1\r\np\r\n$');

describe('the fast Position decoder (PositionReader)', () => {
  it('reads what protobuf-es toBinary writes, in place inside a larger buffer, like fromBinary', () => {
    const reader = new PositionReader();
    let nx = 0;
    for (const c of cases()) {
      const want = message(c.deviceId, c.receivedAtMs, c.codec, c.input);
      const bytes = toBinary(PositionSchema, want);
      // Surrounded by other bytes, as field p is inside a stream reply.
      const reply = Buffer.concat([PREFIX, Buffer.from(bytes), Buffer.from('\r\n')]);
      expect(reader.read(reply, PREFIX.length, PREFIX.length + bytes.length)).toBe(true);
      expect(readBack(reader)).toEqual(fromBinary(PositionSchema, bytes));
      expect(reader.nxCount).toBe(c.input.io.filter((e) => e.width === 0).length);
      nx += reader.nxCount;
    }
    expect(nx).toBeGreaterThan(100);
  });

  it('skips fields of numbers it does not know and refuses what is not plain', () => {
    const reader = new PositionReader();
    const bytes = Buffer.from(toBinary(PositionSchema, message('356307042441013', 1, Codec.CODEC_8, randomInput(prng(3), Codec.CODEC_8))));
    // Field 15 (varint 7) and field 16 (length-delimited, 2 bytes) appended: skipped.
    expect(reader.read(Buffer.concat([bytes, Buffer.from([0x78, 7, 0x82, 0x01, 2, 0xaa, 0xbb])]))).toBe(true);
    expect(readBack(reader)).toEqual(fromBinary(PositionSchema, bytes));
    expect(reader.read(bytes.subarray(0, bytes.length - 1))).toBe(false); // truncated
    expect(reader.read(Buffer.concat([bytes, Buffer.from([0x0b])]))).toBe(false); // a group (wire type 3)
    expect(reader.read(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(false); // int64 beyond 2^53
  });
});
