import { readFileSync } from 'node:fs';
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
  PositionSchema,
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LEN,
  WIRE_VARINT,
  type Position,
  type PositionInput,
  type PositionIoInput,
} from '@pitwall/contract';

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

interface VectorRecord {
  timestamp_ms: number;
  priority: number;
  lat: number;
  lon: number;
  altitude_m: number;
  heading_deg: number;
  satellites: number;
  speed_kmh: number;
  event_io_id: number;
  generation_type: number | null;
  io: Record<string, number>;
}

/** Teltonika's documented example records (services/teltonika's copy of the shared vectors), as encoder input. */
function vectorInputs(): { codec: Codec; input: PositionInput }[] {
  const file = JSON.parse(readFileSync(new URL('../../teltonika/test/fixtures/teltonika-wiki.json', import.meta.url), 'utf8')) as {
    vectors: { codec_id?: string; records: VectorRecord[] }[];
  };
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
