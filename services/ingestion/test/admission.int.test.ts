import { groupsOf } from '@pitwall/streams';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createMetricsRegistry, Histogram } from '@pitwall/platform';
import { liveShardKey, parseEntries, PROCESSOR_GROUP, shardKey } from '@pitwall/contract';
import { RedisServer, sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { StoreError } from '../src/store/store-error.js';
import { admissionsOf, PositionStore } from '../src/store/position-store.js';

// The admission script against a real Redis: the cap counts the processor group's lag + pending,
// falls back to the stream length when the group is missing or its lag unknown, never trims, sends
// refused records live-only, and survives a flushed script cache.

const redis = new Redis(sharedRedisUrl());
const histogram = new Histogram({ name: 'test_admission_seconds', help: 'test', registers: [createMetricsRegistry()] });

function store(cap: number, client: Redis = redis): PositionStore {
  return new PositionStore(
    client,
    { streamMaxLen: cap, liveMaxLen: 100, deadLetterKey: uniqueName('dl'), deadLetterMaxLen: 100 },
    histogram,
  );
}

const entries = (n: number) => Array.from({ length: n }, (_, i) => Buffer.from([0x0a, 0x01, 0x30 + (i % 10)]));

function keys(): { shard: string; live: string } {
  const base = uniqueName('admission');
  return { shard: shardKey(base, 0), live: liveShardKey(base, 0) };
}

afterAll(async () => {
  await redis.quit();
});

describe('admission script', () => {
  it('admits while lag + pending + n <= cap, then sends packets live-only; never trims', async () => {
    const { shard, live } = keys();
    await redis.xgroup('CREATE', shard, PROCESSOR_GROUP, '$', 'MKSTREAM');
    const s = store(25);
    expect(await s.append(shard, live, entries(10))).toEqual({ admitted: true, backlog: 0 });
    // Ten delivered to the writer but not acknowledged: pending counts as much as lag.
    await redis.xreadgroup('GROUP', PROCESSOR_GROUP, 'w', 'COUNT', 10, 'STREAMS', shard, '>');
    expect(await s.append(shard, live, entries(10))).toEqual({ admitted: true, backlog: 10 });
    expect(await s.append(shard, live, entries(10))).toEqual({ admitted: false, backlog: 20 });
    expect(await redis.xlen(shard)).toBe(20);
    expect(await redis.xlen(live)).toBe(10);
    expect(await s.append(shard, live, entries(5))).toEqual({ admitted: true, backlog: 20 });
    expect(await s.append(shard, live, entries(1))).toEqual({ admitted: false, backlog: 25 });
    // The writer acknowledges: room again, and every entry is still there.
    const pending = (await redis.xpending(shard, PROCESSOR_GROUP, '-', '+', 100)) as [string][];
    await redis.xack(shard, PROCESSOR_GROUP, ...pending.map((p) => p[0]));
    expect(await s.append(shard, live, entries(10))).toEqual({ admitted: true, backlog: 15 });
    expect(await redis.xlen(shard)).toBe(35);
  });

  it('counts the whole stream when the group is missing or its lag is unknown', async () => {
    const { shard, live } = keys();
    const s = store(12);
    expect((await s.append(shard, live, entries(10))).admitted).toBe(true);
    expect(await s.append(shard, live, entries(5))).toEqual({ admitted: false, backlog: 10 });
    // A group that has read everything, then a deletion inside the range it has not read: Redis
    // reports its lag as nil, and the script falls back to XLEN.
    await redis.xgroup('CREATE', shard, PROCESSOR_GROUP, '0');
    await redis.xreadgroup('GROUP', PROCESSOR_GROUP, 'w', 'COUNT', 2, 'STREAMS', shard, '>');
    const all = parseEntries(await redis.callBuffer('XRANGE', shard, '-', '+'));
    await redis.xdel(shard, all[5]?.id ?? '');
    expect((await groupsOf(redis, shard))?.[0]?.lag).toBeUndefined();
    expect(await s.append(shard, live, entries(3))).toEqual({ admitted: true, backlog: 9 });
    expect(await s.append(shard, live, entries(1))).toEqual({ admitted: false, backlog: 12 });
  });

  it('keeps the traceparent of a sampled packet in the shard and the live-only stream', async () => {
    const { shard, live } = keys();
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await store(1).append(shard, live, entries(1), tp);
    await store(1).append(shard, live, entries(1), tp);
    for (const key of [shard, live]) {
      const [entry] = parseEntries(await redis.callBuffer('XRANGE', key, '-', '+'));
      expect(entry?.fields.map(String)).toEqual(['p', '\n\x010', 'tp', tp]);
    }
  });

  it('admits the packets one turn offers a shard in one call, each whole or not at all, with its own reply', async () => {
    // A Redis of the test's own: its command statistics count this test's calls only.
    const server = await RedisServer.start();
    const client = new Redis(server.url);
    try {
      const { shard, live } = keys();
      await client.xgroup('CREATE', shard, PROCESSOR_GROUP, '$', 'MKSTREAM');
      const s = store(7, client);
      await s.loadScript();
      await client.config('RESETSTAT');
      // Packets of many devices read in the same poll phase: 3 fits, 3 fits, 3 does not (6 + 3 > 7),
      // 1 still fits, one held back by backpressure goes live-only whatever the backlog.
      const outcomes = await Promise.all([
        s.append(shard, live, entries(3)),
        s.append(shard, live, entries(3)),
        s.append(shard, live, entries(3)),
        s.append(shard, live, entries(1)),
        s.appendLive(shard, live, entries(2)),
      ]);
      expect(outcomes).toEqual([
        { admitted: true, backlog: 0 },
        { admitted: true, backlog: 3 },
        { admitted: false, backlog: 6 },
        { admitted: true, backlog: 6 },
        { admitted: false, backlog: 7 },
      ]);
      expect(await client.xlen(shard)).toBe(7);
      expect(await client.xlen(live)).toBe(5);
      const stats = await client.info('commandstats');
      expect(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1]).toBe('1');
      // The next turn's call sees what this one admitted.
      expect(await s.append(shard, live, entries(1))).toEqual({ admitted: false, backlog: 7 });
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });

  it('splits the packets of a turn into bounded calls, in order, one call per shard', async () => {
    const server = await RedisServer.start();
    const client = new Redis(server.url);
    try {
      const a = keys();
      const b = keys();
      const s = store(1_000_000, client);
      await s.loadScript();
      await client.config('RESETSTAT');
      // 300 packets of 2 records to one shard: more than one call may carry (512 records, 128 packets).
      const calls = Array.from({ length: 300 }, () => s.append(a.shard, a.live, entries(2)));
      const other = s.append(b.shard, b.live, entries(2));
      const outcomes = await Promise.all(calls);
      expect(outcomes.map((o) => o.backlog)).toEqual(Array.from({ length: 300 }, (_, i) => 2 * i));
      expect(await other).toEqual({ admitted: true, backlog: 0 });
      expect(await client.xlen(a.shard)).toBe(600);
      const stats = await client.info('commandstats');
      expect(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1]).toBe('4');
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });

  it('fails every packet of a call Redis could not run, and only those', async () => {
    const { shard, live } = keys();
    // Not a stream: XINFO GROUPS fails with WRONGTYPE inside the script.
    await redis.set(shard, 'not a stream');
    const other = keys();
    const s = store(100);
    const results = await Promise.allSettled([
      s.append(shard, live, entries(1)),
      s.append(shard, live, entries(1)),
      s.append(other.shard, other.live, entries(1)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    for (const r of results.slice(0, 2)) {
      expect(r.status === 'rejected' && r.reason instanceof StoreError && r.reason.message).toMatch(/^admission to .* failed: .*WRONGTYPE/);
    }
  });

  it('reloads the script after Redis lost its script cache (NOSCRIPT)', async () => {
    // A Redis of the test's own: flushing the shared one's script cache would disturb other tests.
    const server = await RedisServer.start();
    const client = new Redis(server.url);
    try {
      const { shard, live } = keys();
      const s = store(100, client);
      await s.loadScript();
      await client.script('FLUSH');
      expect((await s.append(shard, live, entries(2))).admitted).toBe(true);
      expect((await s.append(shard, live, entries(2))).admitted).toBe(true);
      expect(await client.xlen(shard)).toBe(4);
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });
});

describe('admission reply', () => {
  const packets = [{ entries: [1, 2] }, { entries: [1] }, { entries: [1, 2, 3] }];

  it('gives each packet its outcome when the ids match what was admitted', () => {
    expect(admissionsOf([1, 0, 0, 2, 1, 2, 'a', 'b', 'c', 'd', 'e'], packets)).toEqual([
      { admitted: true, backlog: 0 },
      { admitted: false, backlog: 2 },
      { admitted: true, backlog: 2 },
    ]);
  });

  it('refuses a reply with too few or too many ids, or of the wrong shape', () => {
    expect(admissionsOf([1, 0, 0, 2, 1, 2, 'a', 'b', 'c', 'd'], packets)).toBeInstanceOf(Error);
    expect(admissionsOf([1, 0, 0, 2, 0, 2, 'a', 'b', 'c'], packets)).toBeInstanceOf(Error);
    expect(admissionsOf([1, 0, 0, 2], packets)).toBeInstanceOf(Error);
    expect(admissionsOf([2, 0, 0, 2, 0, 2], packets)).toBeInstanceOf(Error);
    expect(admissionsOf('OK', packets)).toBeInstanceOf(Error);
  });
});
