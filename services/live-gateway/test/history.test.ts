import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../src/history/cursor.js';
import { parseEntryId, type EntryId } from '../src/history/entry-id.js';
import { HELD_POSITION_BYTES, PositionHistory, type HeldPosition } from '../src/history/position-history.js';
import { flatString, type LivePosition } from '../src/protocol/position-json.js';

function id(text: string): EntryId {
  const parsed = parseEntryId(text);
  if (parsed === undefined) throw new Error(`bad id ${text}`);
  return parsed;
}

function at(source: number, entryId: string, deviceId: string, ts = id(entryId).ms): LivePosition {
  return {
    deviceId,
    ts,
    rx: ts,
    body: `"ts":${ts},"lat":54.6872,"lon":25.2797,"alt":100,"speed":50,"heading":90,"sats":9,"rx":${ts}}`,
    source,
    id: id(entryId),
  };
}

const all = () => true;
const ids = (positions: readonly HeldPosition[]) => positions.map((p) => `${p.source}:${p.id.ms}-${p.id.seq}`);

function history(overrides: Partial<ConstructorParameters<typeof PositionHistory>[0]> = {}): PositionHistory {
  const h = new PositionHistory({ shards: 2, sources: 2, windowMs: 120_000, maxBytes: 1 << 30, ...overrides });
  h.start(0, id('1000-0'));
  h.start(1, id('1000-0'));
  return h;
}

describe('cursors', () => {
  it('round-trip per source, and refuse another format or shard count', () => {
    const text = encodeCursor(2, [id('1733000000000-3'), undefined]);
    expect(text).toBe('1.2.1733000000000-3._');
    expect(decodeCursor(text, 2, 2)).toEqual([id('1733000000000-3'), undefined]);
    expect(decodeCursor(text, 4, 4)).toBeUndefined();
    expect(decodeCursor('2.2.1-0.1-0', 2, 2)).toBeUndefined();
    expect(decodeCursor('1.2.1-0.x', 2, 2)).toBeUndefined();
    expect(decodeCursor('1.2.1-0.1-0.1-0', 2, 2)).toBeUndefined();
  });
});

describe('position history', () => {
  it('gives exactly the positions after a cursor, in stream order, for the asked devices only', () => {
    const h = history();
    h.add(at(0, '2000-0', 'a'));
    h.add(at(1, '2000-1', 'b'));
    const cursor = h.cursor();
    h.add(at(0, '3000-0', 'a'));
    h.add(at(1, '2500-0', 'b'));
    h.add(at(0, '3000-1', 'c'));
    h.add(at(1, '4000-0', 'a'));
    const after = h.decode(cursor);
    expect(h.recoverability(after)).toBe('recoverable');
    expect(ids(h.collect(['a', 'b'], all, { after }))).toEqual(['1:2500-0', '0:3000-0', '1:4000-0']);
    expect(ids(h.collect(['a', 'b', 'c'], all, {}))).toEqual(['0:2000-0', '1:2000-1', '1:2500-0', '0:3000-0', '0:3000-1', '1:4000-0']);
    // Trails stop where the recovered positions start.
    expect(ids(h.collect(['a', 'b'], all, { upTo: after }))).toEqual(['0:2000-0', '1:2000-1']);
    expect(ids(h.collect(['a'], (p) => p.ts >= 3_500, {}))).toEqual(['1:4000-0']);
  });

  it('takes the tail of a one-source device walking back from its newest, and looks at every position once sources mix', () => {
    const h = history();
    for (let i = 1; i <= 50; i++) h.add(at(0, `${1000 + i * 10}-0`, 'a'));
    const tail = (fromMs: number) => Array.from({ length: (1500 - fromMs) / 10 + 1 }, (_, i) => `0:${fromMs + i * 10}-0`);
    const after = h.decode(h.encode([id('1300-0'), undefined]));
    expect(ids(h.collect(['a'], all, { after }))).toEqual(tail(1310));
    expect(ids(h.collect(['a'], all, { fromMs: 1455 }))).toEqual(tail(1460));
    expect(ids(h.collect(['a'], all, { after, fromMs: 1200 }))).toEqual(tail(1310));
    expect(ids(h.collect(['a'], (p) => p.id.ms % 20 === 0, { after }))).toEqual(tail(1310).filter((_, i) => i % 2 === 1));
    // A position of another source behind the cursor's own ones: still found.
    h.add(at(1, '1100-0', 'a'));
    expect(ids(h.collect(['a'], all, { after }))).toEqual(['1:1100-0', ...tail(1310)]);
  });

  it('says too_old once what came after a cursor was dropped by age, and the window keeps its newest positions', () => {
    const h = history({ windowMs: 10_000 });
    h.add(at(0, '2000-0', 'a'));
    const old = h.cursor();
    h.add(at(0, '5000-0', 'a'));
    const recent = h.cursor();
    h.add(at(0, '14000-0', 'a'));
    // 2000-0 went, but a client that had it misses nothing held.
    expect(h.recoverability(h.decode(old))).toBe('recoverable');
    h.add(at(0, '16000-0', 'a'));
    expect(h.recoverability(h.decode(old))).toBe('too_old');
    expect(h.recoverability(h.decode(recent))).toBe('recoverable');
    expect(ids(h.collect(['a'], all, { after: h.decode(recent) }))).toEqual(['0:14000-0', '0:16000-0']);
    expect(h.size).toBe(2);
  });

  it('stays within its byte bound, dropping the oldest first', () => {
    const h = history({ maxBytes: 10 * HELD_POSITION_BYTES });
    const cursors: string[] = [];
    for (let i = 0; i < 30; i++) {
      h.add(at(i % 2, `${2000 + i}-0`, `d${i % 3}`));
      cursors.push(h.cursor());
      expect(h.bytes).toBeLessThanOrEqual(10 * HELD_POSITION_BYTES);
    }
    expect(h.size).toBe(10);
    expect(h.recoverability(h.decode(cursors[10] ?? ''))).toBe('too_old');
    expect(h.recoverability(h.decode(cursors[20] ?? ''))).toBe('recoverable');
    expect(h.collect(['d0', 'd1', 'd2'], all, { after: h.decode(cursors[20] ?? '') })).toHaveLength(9);
  });

  it('moves the cursor past a skipped position without keeping it', () => {
    const h = history();
    const before = h.cursor();
    h.skip(at(0, '2000-0', 'a'));
    h.add(at(0, '2001-0', 'a'));
    expect(h.cursor()).toBe('1.2.2001-0.1000-0');
    expect(ids(h.collect(['a'], all, { after: h.decode(before) }))).toEqual(['0:2001-0']);
  });

  it('says ahead for a cursor beyond what it read, invalid for garbage, and nothing is recoverable across a gap', () => {
    const h = history();
    h.add(at(0, '2000-0', 'a'));
    expect(h.recoverability(h.decode('1.2.5000-0.1000-0'))).toBe('ahead');
    expect(h.recoverability(h.decode('nonsense'))).toBe('invalid');
    const before = h.cursor();
    h.gap(0);
    expect(h.recoverability(h.decode(before))).toBe('too_old');
    h.add(at(0, '9000-0', 'a'));
    expect(h.recoverability(h.decode(before))).toBe('too_old');
    expect(h.recoverability(h.decode(h.cursor()))).toBe('recoverable');
  });

  it('counts warm-up positions and takes the oldest of them as the floor', () => {
    const h = new PositionHistory({ shards: 1, sources: 1, windowMs: 120_000, maxBytes: 1 << 30 });
    h.start(0, id('5000-0'));
    h.warm(0, [at(0, '3000-0', 'a'), at(0, '4000-0', 'a'), at(0, '5000-0', 'b')]);
    expect(h.recoverability(h.decode('1.1.2999-0'))).toBe('too_old');
    expect(h.recoverability(h.decode('1.1.3000-0'))).toBe('recoverable');
    expect(ids(h.collect(['a', 'b'], all, { after: h.decode('1.1.3000-0') }))).toEqual(['0:4000-0', '0:5000-0']);
  });

  it('estimates its heap use within 25% of what it measurably takes', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const count = 100_000;
    // Bodies made the way the consumer makes them: a fresh string per position.
    const positions: LivePosition[] = [];
    const h = new PositionHistory({ shards: 4, sources: 4, windowMs: 3_600_000, maxBytes: 1 << 30 });
    for (let s = 0; s < 4; s++) h.start(s, id('1-0'));
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < count; i++) {
      const ts = 1_733_000_000_000 + i * 10;
      const position = {
        ...at(i % 4, `${ts}-${i % 7}`, String(356307040000000 + (i % 5_000)), ts),
        body: flatString(
          `"ts":${ts},"lat":${54 + i / 1e6},"lon":${25 + i / 1e6},"alt":${i % 300},"speed":${i % 200},"heading":${i % 360},"sats":9,"rx":${ts + 5}}`,
        ),
      };
      h.add(position);
    }
    gc();
    const measured = process.memoryUsage().heapUsed - before;
    positions.length = 0;
    expect(h.size).toBe(count);
    const ratio = measured / h.bytes;
    console.log(
      `history: ${count} positions, estimated ${h.bytes} bytes, measured ${measured} bytes (${(measured / count).toFixed(0)} per position, ratio ${ratio.toFixed(2)})`,
    );
    expect(ratio).toBeGreaterThan(0.75);
    expect(ratio).toBeLessThan(1.25);
  });
});
