import { CODEC_16, CODEC_8, CODEC_8_EXTENDED, type AvlCodecId, type AvlIoElement, type AvlRecord } from '@pitwall/teltonika';

/** mulberry32: a small seeded PRNG, so every fuzz case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomInt(rand: () => number, min: number, max: number): number {
  return min + Math.floor(rand() * (max - min + 1));
}

export function randomBytes(rand: () => number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = Math.floor(rand() * 256);
  return buf;
}

function randomValue(rand: () => number, width: 1 | 2 | 4 | 8): bigint {
  if (width === 8) return (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
  return BigInt(Math.floor(rand() * 2 ** (8 * width)));
}

/** A random record valid for `codec`, IO elements already in wire order (grouped by width). */
export function randomRecord(rand: () => number, codec: AvlCodecId): AvlRecord {
  const maxId = codec === CODEC_8 ? 255 : 65535;
  const io: AvlIoElement[] = [];
  for (const width of [1, 2, 4, 8] as const) {
    const n = randomInt(rand, 0, 4);
    for (let i = 0; i < n; i++) io.push({ id: randomInt(rand, 0, maxId), width, value: randomValue(rand, width), raw: undefined });
  }
  if (codec === CODEC_8_EXTENDED) {
    const n = randomInt(rand, 0, 2);
    for (let i = 0; i < n; i++)
      io.push({ id: randomInt(rand, 0, maxId), width: 0, value: 0n, raw: new Uint8Array(randomBytes(rand, randomInt(rand, 0, 40))) });
  }
  return {
    timestampMs: randomInt(rand, 0, 2 ** 42),
    priority: randomInt(rand, 0, 2),
    latE7: randomInt(rand, -900_000_000, 900_000_000),
    lonE7: randomInt(rand, -1_800_000_000, 1_800_000_000),
    altitudeM: randomInt(rand, -32768, 32767),
    headingDeg: randomInt(rand, 0, 360),
    satellites: randomInt(rand, 0, 255),
    speedKmh: randomInt(rand, 0, 65535),
    eventIoId: randomInt(rand, 0, maxId),
    generationType: codec === CODEC_16 ? randomInt(rand, 0, 7) : undefined,
    io,
  };
}

export const AVL_CODECS: readonly AvlCodecId[] = [CODEC_8, CODEC_8_EXTENDED, CODEC_16];

/** Splits `data` into chunks of random sizes (1..maxChunk). */
export function randomSplit(rand: () => number, data: Buffer, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < data.length;) {
    const n = randomInt(rand, 1, maxChunk);
    chunks.push(data.subarray(pos, pos + n));
    pos += n;
  }
  return chunks;
}

/** A random record dated in the past (a server rejects records dated far ahead of its clock). */
export function randomPastRecord(rand: () => number, codec: AvlCodecId): AvlRecord {
  const record = randomRecord(rand, codec);
  record.timestampMs = randomInt(rand, 0, 1_700_000_000_000);
  return record;
}
