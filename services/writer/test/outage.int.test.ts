import { PostgresServer, RedisServer, scrapeMetric, sleep, startService, uniqueName, waitFor } from '@pitwall/testkit';
import { encodePosition, POSITION_FIELD, PROCESSOR_GROUP, shardKey } from '@pitwall/contract';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { groupBacklog, keysOf, makePositions, produce, storedKeys, waitAllAcked } from './helpers.js';

// Outages of the writer's dependencies, on servers of the test's own (stopped and started here).

async function readyStatus(metricsUrl: string): Promise<number> {
  return (await fetch(`${metricsUrl}/readyz`)).status;
}

interface WriterRig {
  postgres: PostgresServer;
  redis: Redis;
  redisServer: RedisServer;
  streamKey: string;
  databaseUrl: string;
  metricsUrl: string;
}

/** A writer (INSTANCE_ID w1, one shard unless `env` says otherwise) on a PostgreSQL and an append-only Redis of the test's own. */
async function withWriter(env: Record<string, string>, body: (rig: WriterRig) => Promise<void>): Promise<void> {
  const [postgres, redisServer] = await Promise.all([PostgresServer.start(), RedisServer.start({ durable: true })]);
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  const streamKey = uniqueName('positions');
  try {
    const databaseUrl = await postgres.createDatabase('pitwall');
    const writer = await startService('writer', {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisServer.url,
      STREAM_KEY: streamKey,
      INSTANCE_ID: 'w1',
      WRITER_BLOCK_MS: '200',
      WRITER_RETRY_MAX_MS: '500',
      ...env,
    });
    try {
      await body({ postgres, redis, redisServer, streamKey, databaseUrl, metricsUrl: writer.metricsUrl });
    } finally {
      await writer.proc.stop();
    }
  } finally {
    redis.disconnect();
    await Promise.all([postgres.destroy(), redisServer.destroy()]);
  }
}

describe('writer through outages', () => {
  it('loses nothing while PostgreSQL is stopped for 30 s, reports not ready, and resumes by itself', async () => {
    const env = { STREAM_SHARDS: '2', WRITER_STATS_INTERVAL_MS: '200', WRITER_RETRY_MAX_MS: '1000' };
    await withWriter(env, async ({ postgres, redis, streamKey, databaseUrl, metricsUrl }) => {
      const positions = makePositions(3_000, { devices: 100 });
      await produce(redis, streamKey, 2, positions.slice(0, 1_000));
      await waitAllAcked(redis, streamKey, 2);

      await postgres.stop();
      const stoppedAt = Date.now();
      await waitFor('readyz 503', async () => (await readyStatus(metricsUrl)) === 503);
      expect(await (await fetch(`${metricsUrl}/readyz`)).text()).toMatch(/postgres/);
      // Positions keep arriving during the outage; none may be acknowledged before it ends.
      for (let i = 1_000; i < 3_000; i += 250) {
        await produce(redis, streamKey, 2, positions.slice(i, i + 250));
        await sleep(2_000);
      }
      await sleep(Math.max(0, 30_000 - (Date.now() - stoppedAt)));
      const during = await groupBacklog(redis, streamKey, 2);
      expect(during.pending + during.lag).toBe(2_000);
      expect(await readyStatus(metricsUrl)).toBe(503);
      expect(await scrapeMetric(metricsUrl, 'pitwall_writer_entries_acked_total')).toBe(1_000);

      await postgres.restart();
      await waitAllAcked(redis, streamKey, 2, 60_000);
      expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
      await waitFor('readyz 200', async () => (await readyStatus(metricsUrl)) === 200);
      expect(await scrapeMetric(metricsUrl, 'pitwall_writer_retries_total', { operation: 'postgres' })).toBeGreaterThan(0);
    });
  }, 180_000);

  it('recovers by itself when Redis crashes and comes back', async () => {
    await withWriter({}, async ({ redis, redisServer, streamKey, databaseUrl, metricsUrl }) => {
      const positions = makePositions(1_000, { devices: 20 });
      await produce(redis, streamKey, 1, positions.slice(0, 500));
      await waitAllAcked(redis, streamKey, 1);
      await redisServer.kill();
      await waitFor('readyz 503', async () => (await readyStatus(metricsUrl)) === 503);
      await sleep(2_000);
      await redisServer.restart();
      await waitFor('readyz 200', async () => (await readyStatus(metricsUrl)) === 200, { timeoutMs: 20_000 });
      await produce(redis, streamKey, 1, positions.slice(500));
      await waitAllAcked(redis, streamKey, 1);
      expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    });
  });

  it('takes back entries of a read whose reply Redis never delivered, without waiting for the claim timeout', async () => {
    // Claiming would also find the entry, but only after this long: the test must not rely on it.
    await withWriter({ WRITER_CLAIM_IDLE_MS: '600000' }, async ({ redis, redisServer, streamKey, databaseUrl }) => {
      const positions = makePositions(21, { devices: 3 });
      await produce(redis, streamKey, 1, positions.slice(0, 20));
      await waitAllAcked(redis, streamKey, 1);
      // What Redis does when it serves the writer's XREADGROUP and the connection dies before the
      // reply: the entry is in consumer w1's pending list, and w1 never saw it.
      const lost = positions[20]!;
      const key = shardKey(streamKey, 0);
      const replies = await redis
        .multi()
        .xadd(key, '*', POSITION_FIELD, Buffer.from(encodePosition(lost)))
        .xreadgroup('GROUP', PROCESSOR_GROUP, 'w1', 'COUNT', 1, 'STREAMS', key, '>')
        .exec();
      for (const [err] of replies ?? []) if (err) throw err;
      expect((await groupBacklog(redis, streamKey, 1)).pending).toBe(1);
      // The crash that lost the reply: the writer's read fails, Redis comes back with its pending list.
      await redisServer.kill();
      await sleep(1_000);
      await redisServer.restart();
      await waitAllAcked(redis, streamKey, 1, 20_000);
      expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    });
  });
});
