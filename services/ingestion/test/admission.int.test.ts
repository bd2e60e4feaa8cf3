import { groupsOf } from '@pitwall/streams';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createMetricsRegistry, Histogram } from '@pitwall/platform';
import { liveShardKey, parseEntries, PROCESSOR_GROUP, shardKey } from '@pitwall/contract';
import { RedisServer, sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { PositionStore } from '../src/store/position-store.js';

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

  it('sends the admission calls of one event-loop turn in one socket write, each with its own reply', async () => {
    const { shard, live } = keys();
    await redis.xgroup('CREATE', shard, PROCESSOR_GROUP, '$', 'MKSTREAM');
    const s = store(1_000);
    // Packets of many devices read in the same poll phase: the Redis socket stays corked until the
    // turn ends, then one writev carries every call.
    const calls = Array.from({ length: 20 }, () => s.append(shard, live, entries(2)));
    expect(redis.stream.writableCorked).toBe(1);
    const outcomes = await Promise.all(calls);
    expect(redis.stream.writableCorked).toBe(0);
    expect(outcomes.map((o) => o.admitted)).toEqual(Array.from({ length: 20 }, () => true));
    expect(outcomes.map((o) => o.backlog)).toEqual(Array.from({ length: 20 }, (_, i) => 2 * i));
    expect(await redis.xlen(shard)).toBe(40);
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
