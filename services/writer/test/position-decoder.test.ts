import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type Codec,
  createPosition,
  decodePosition,
  encodePosition,
  StreamEntryError,
  type Position,
  type PositionInit,
} from '@pitwall/contract';
import {
  addStreamEntry,
  batchRows,
  CopyBatchBuilder,
  InvalidPositionError,
  rowFromTuple,
  subBatch,
  toPositionRow,
  type PositionRow,
} from '@pitwall/writer';
import { encodeCommand, parseStreamRead } from '@pitwall/streams';

const NOW = Date.UTC(2026, 10, 27, 12);

/** Adds one stream entry with these fields to a batch, as the writer does with what it read. */
function addEntry(builder: CopyBatchBuilder, fields: Buffer[], nowMs: number): void {
  // An XREADGROUP reply of one stream and one entry: its fields list is a RESP array of bulk strings,
  // which is what encodeCommand writes.
  const reply = Buffer.concat([Buffer.from('*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$3\r\n1-0\r\n'), encodeCommand(fields)]);
  const [entries] = parseStreamRead(reply);
  addStreamEntry(builder, entries!, 0, nowMs);
}

/** A deterministic pseudo-random generator (mulberry32), so failures reproduce. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function randomPosition(next: () => number): Position {
  const int = (max: number) => Math.floor(next() * max);
  const init: PositionInit = {
    // 15 digits (the fast decoder caches these by value, so leading zeros must survive), 16 and 17.
    deviceId: [
      String(350_000_000_000_000 + int(9_999_999_999)),
      `0${10 ** 13 + int(9 * 10 ** 13)}`,
      String(10 ** 15 + int(9 * 10 ** 15)),
      `35${String(int(10 ** 15)).padStart(15, '0')}`,
    ][int(4)]!,
    recordedAtMs: BigInt(NOW - int(400 * 86_400_000)),
    receivedAtMs: next() < 0.1 ? 0n : BigInt(NOW - int(1_000)),
    latE7: int(1_800_000_001) - 900_000_000,
    lonE7: int(3_600_000_001) - 1_800_000_000,
    altitudeM: int(20_000) - 1_000,
    speedKmh: int(400),
    headingDeg: int(361),
    satellites: int(40),
    priority: int(3),
    eventIoId: int(3),
    codec: int(4) as Codec,
    io: Array.from({ length: int(8) }, () => {
      const width = [0, 1, 2, 4, 8][int(5)]!;
      return width === 0
        ? { id: int(70_000), width, raw: Uint8Array.from(randomBytes(int(20))) }
        : { id: int(70_000), width, value: next() < 0.2 ? BigInt.asUintN(64, BigInt(int(2 ** 31)) ** 2n * 7n) : BigInt(int(2 ** 31)) };
    }),
  };
  if (next() < 0.3) init.generationType = int(8);
  return createPosition(init);
}

/** A row through a COPY tuple and back, as PostgreSQL will see it (floats as float4). */
function viaTuple(add: (builder: CopyBatchBuilder) => boolean): PositionRow | undefined {
  const builder = new CopyBatchBuilder(16);
  if (!add(builder)) return undefined;
  const batch = builder.finish();
  expect(batch.length).toBe(1);
  const [only] = batchRows(batch);
  const row = rowFromTuple(batch.copyData, only!);
  expect(only).toMatchObject({ deviceId: row.deviceId, recordedAtMs: row.recordedAtMs });
  return row;
}

/** The fast path: protobuf bytes straight into a tuple. */
function fast(bytes: Buffer): PositionRow | undefined {
  return viaTuple((builder) => builder.addPositionBytes(bytes, NOW));
}

/** The contract's way: decodePosition + toPositionRow into a tuple, or the error it throws. */
function canonical(bytes: Uint8Array): PositionRow | Error {
  try {
    const row = toPositionRow(decodePosition(bytes), NOW);
    return viaTuple((builder) => {
      builder.addRow(row);
      return true;
    })!;
  } catch (err) {
    if (err instanceof InvalidPositionError || err instanceof StreamEntryError) return err;
    throw err;
  }
}

function comparable(row: PositionRow) {
  return { ...row, attributes: JSON.parse(row.attributes) as unknown };
}

describe('CopyBatchBuilder.addPositionBytes (fast path)', () => {
  it('yields exactly the row of the contract decoder for a thousand random valid positions', () => {
    const next = random(42);
    for (let i = 0; i < 1_000; i++) {
      const bytes = Buffer.from(encodePosition(randomPosition(next)));
      const expected = canonical(bytes);
      expect(expected).not.toBeInstanceOf(Error);
      const row = fast(bytes);
      expect(row, `position ${i}`).toBeDefined();
      expect(comparable(row!)).toEqual(comparable(expected as PositionRow));
    }
  });

  it('never accepts what the contract decoder rejects: invalid values, truncated and corrupted bytes', () => {
    const next = random(7);
    const invalid: PositionInit[] = [
      { deviceId: 'abc' },
      { deviceId: '3520930864036559999' },
      { deviceId: '35209308640365' },
      { deviceId: '35209308640365a' },
      { deviceId: '35209308640365\u0660' },
      { recordedAtMs: 0n },
      { recordedAtMs: -5n },
      { recordedAtMs: 2n ** 62n },
      { receivedAtMs: 2n ** 60n },
      { latE7: -900_000_001 },
      { headingDeg: 400 },
      { satellites: 70_000 },
    ];
    const base = { deviceId: '352093086403655', recordedAtMs: BigInt(NOW - 1_000), receivedAtMs: BigInt(NOW) };
    for (const init of invalid) {
      const bytes = Buffer.from(encodePosition(createPosition({ ...base, ...init })));
      expect(canonical(bytes)).toBeInstanceOf(InvalidPositionError);
      expect(
        fast(bytes),
        JSON.stringify(init, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
      ).toBeUndefined();
    }
    for (let i = 0; i < 3_000; i++) {
      const bytes = Buffer.from(encodePosition(randomPosition(next)));
      const cut = Math.floor(next() * bytes.length);
      const mutated = next() < 0.5 ? bytes.subarray(0, cut) : Buffer.from(bytes);
      if (mutated !== bytes && mutated.length === bytes.length) mutated[cut] = Math.floor(next() * 256);
      const row = fast(mutated);
      if (row === undefined) continue;
      const expected = canonical(mutated);
      expect(expected, `mutation ${i}`).not.toBeInstanceOf(Error);
      expect(comparable(row)).toEqual(comparable(expected as PositionRow));
    }
    expect(fast(Buffer.from('not a protobuf'))).toBeUndefined();
  });

  it('falls back to the contract decoder for the entry error, writing nothing', () => {
    const builder = new CopyBatchBuilder(16);
    expect(() => addEntry(builder, [Buffer.from('p'), Buffer.from([0xff, 0xff])], NOW)).toThrow(StreamEntryError);
    expect(() => addEntry(builder, [Buffer.from('x'), Buffer.from('y')], NOW)).toThrow(/no field "p"/);
    const bytes = Buffer.from(encodePosition(createPosition({ deviceId: 'x', recordedAtMs: BigInt(NOW) })));
    expect(() => addEntry(builder, [Buffer.from('p'), bytes], NOW)).toThrow(InvalidPositionError);
    const batch = builder.finish();
    expect(batch.length).toBe(0);
    expect(batch.copyData).toEqual(
      Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8), Buffer.from([0xff, 0xff])]),
    );
  });

  it('cuts a batch into sub-batches that hold the same tuples', () => {
    const next = random(3);
    // Room for 4 rows at first: the row columns grow as the batch does.
    const builder = new CopyBatchBuilder(16, 4);
    const positions = Array.from({ length: 20 }, () => randomPosition(next));
    for (const p of positions) addEntry(builder, [Buffer.from('p'), Buffer.from(encodePosition(p))], NOW);
    const batch = builder.finish();
    expect(batchRows(batch).map((r) => comparable(rowFromTuple(batch.copyData, r)))).toEqual(
      positions.map((p) => comparable(canonical(encodePosition(p)) as PositionRow)),
    );
    const part = subBatch(batch, 5, 12);
    expect(part.length).toBe(7);
    expect(batchRows(part).map((r) => rowFromTuple(part.copyData, r))).toEqual(
      batchRows(batch)
        .slice(5, 12)
        .map((r) => rowFromTuple(batch.copyData, r)),
    );
    expect(batchRows(part).map((r) => [r.deviceId, r.recordedAtMs])).toEqual(
      positions.slice(5, 12).map((p) => [p.deviceId, Number(p.recordedAtMs)]),
    );
    expect(part.copyData.subarray(-2)).toEqual(Buffer.from([0xff, 0xff]));
  });
});
