import { MAX_POSITION_ENTRY_BYTES, PROCESSOR_GROUP } from '@pitwall/contract';
import { commonEnv, createLogger, parseConfig } from '@pitwall/platform';
import { sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { ShardConnections } from '@pitwall/streams';
import { countForBytes, ENTRY_OVERHEAD_BYTES, GroupConsumer } from '@pitwall/writer';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';

// How the writer sizes its reads in bytes (WRITER_BATCH_MAX_BYTES), against a real Redis.

const logger = createLogger('test', 'silent');
const redis = new Redis(sharedRedisUrl());
const connections: ShardConnections[] = [];
const connect = () => {
  const shards = new ShardConnections({
    target: parseConfig(commonEnv, { REDIS_URL: sharedRedisUrl() }),
    name: 'writer:test:budget',
    logger,
    replyTimeoutMs: 5_000,
  });
  connections.push(shards);
  return shards;
};
afterAll(async () => {
  await Promise.all(connections.map((c) => c.close()));
  redis.disconnect();
});

describe('writer reads bounded in bytes', () => {
  it('lowers COUNT so that COUNT x shards x the largest stored entry fits WRITER_BATCH_MAX_BYTES', () => {
    const entry = MAX_POSITION_ENTRY_BYTES + ENTRY_OVERHEAD_BYTES;
    expect(countForBytes(5_000, 8 * 1024 * 1024, 2)).toBe(Math.floor((8 * 1024 * 1024) / (2 * entry)));
    expect(countForBytes(100, 8 * 1024 * 1024, 2)).toBe(100);
    expect(countForBytes(5_000, 1_000, 4)).toBe(1);
  });

  it('shrinks COUNT after a reply bigger than the bound (entries stored before it), and lets it grow back', async () => {
    const key = uniqueName('budget');
    await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM');
    // 40 entries of 20 KB: five times the largest entry ingestion stores today.
    for (let i = 0; i < 40; i++) await redis.xadd(key, '*', 'p', Buffer.alloc(20_000, i));
    const maxBytes = 64 * 1024;
    const consumer = new GroupConsumer(connect(), { keys: [key], consumer: 'c1', count: 5_000, maxBytes, blockMs: 100 });
    expect(consumer.count).toBe(countForBytes(5_000, maxBytes, 1));
    const first = await consumer.readNew(false);
    expect(first.count).toBe(15);
    expect(first.batches[0]?.length).toBe(15);
    // 15 x 20 KB = 300 KB > 64 KiB: the next reads fit (3 x 20 KB).
    expect(consumer.count).toBe(3);
    const second = await consumer.readNew(false);
    expect(second.batches[0]?.reply.length).toBeLessThanOrEqual(maxBytes);
    // The pending re-read after a restart uses the same bound.
    const pending = await consumer.readPending(new Map([[key, '0']]));
    expect(pending.batches[0]?.length).toBe(3);
    // Small entries again: COUNT doubles back towards its maximum.
    await redis.xtrim(key, 'MAXLEN', 0);
    for (let i = 0; i < 40; i++) await redis.xadd(key, '*', 'p', 'small');
    await consumer.readNew(false);
    expect(consumer.count).toBe(6);
    await consumer.readNew(false);
    expect(consumer.count).toBe(12);
    await consumer.readNew(false);
    expect(consumer.count).toBe(15);
  });
});
