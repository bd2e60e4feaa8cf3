import {
  createPosition,
  encodePosition,
  MAX_POSITION_ENTRY_BYTES,
  MAX_STORED_IO_VALUE_BYTES,
  POSITION_FIELD,
  PROCESSOR_GROUP,
  shardKeys,
  shardOf,
  type Position,
} from '@pitwall/contract';
import {
  chartMemoryLimitBytes,
  createTestDatabase,
  peakRssBytesOf,
  RedisServer,
  startService,
  type ServiceProcess,
} from '@pitwall/testkit';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { imei, rowCount, waitAllAcked } from './helpers.js';

// Peak RSS of the built writer (node dist/main.js, the chart's defaults) draining the worst entries a
// device can produce: every stored Position as large as ingestion lets it be (MAX_POSITION_ENTRY_BYTES,
// variable-length IO values of MAX_STORED_IO_VALUE_BYTES), against the chart's memory limit. Its own
// redis-server: ~200 MB of entries do not belong in the run's shared one.

const SHARDS = 4;
const ENTRIES = 48_000;
const MiB = 1024 * 1024;

let server: RedisServer;
let redis: Redis;
const running: ServiceProcess[] = [];

beforeAll(async () => {
  server = await RedisServer.start();
  redis = server.client();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((w) => w.proc.stop('SIGKILL')));
  await redis.flushall();
});
afterAll(async () => {
  redis.disconnect();
  await server.destroy();
});

/** A position with as many 256-byte NX IO values as fit in MAX_POSITION_ENTRY_BYTES. */
export function worstPosition(i: number, devices: number, startMs: number): Position {
  const io = Array.from({ length: 15 }, (_, k) => ({
    id: 10_000 + k,
    width: 0,
    raw: new Uint8Array(MAX_STORED_IO_VALUE_BYTES).fill((i + k) % 256),
  }));
  return createPosition({
    deviceId: imei(i % devices),
    recordedAtMs: BigInt(startMs + Math.floor(i / devices) * 1_000),
    receivedAtMs: BigInt(startMs + Math.floor(i / devices) * 1_000 + 300),
    latE7: 500_000_000 + i,
    lonE7: 100_000_000,
    satellites: 9,
    io: [...io, { id: 66, width: 2, value: 12_000n }, { id: 239, width: 1, value: 1n }],
  });
}

/** Appends ENTRIES worst-case entries over SHARDS shards, with group processor on each. */
async function fillShards(streamKey: string): Promise<void> {
  const keys = shardKeys(streamKey, SHARDS);
  for (const key of keys) await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM');
  const startMs = Date.now() - 3_600_000;
  for (let i = 0; i < ENTRIES; i += 1_000) {
    const pipeline = redis.pipeline();
    for (let j = i; j < i + 1_000; j++) {
      const position = worstPosition(j, 400, startMs);
      const bytes = Buffer.from(encodePosition(position));
      if (j === 0) expect(bytes.length).toBeGreaterThan(MAX_POSITION_ENTRY_BYTES - 200);
      expect(bytes.length).toBeLessThanOrEqual(MAX_POSITION_ENTRY_BYTES);
      pipeline.xadd(keys[shardOf(position.deviceId, SHARDS)] as string, '*', POSITION_FIELD, bytes);
    }
    await pipeline.exec();
  }
}

async function startWriter(databaseUrl: string, streamKey: string): Promise<ServiceProcess> {
  // The chart's defaults (it sets no writer tuning), but for a COUNT tuned up for throughput: the
  // bytes bound (WRITER_BATCH_MAX_BYTES, default) must hold whatever WRITER_BATCH_SIZE says. With the
  // default 5,000 the writer before the bound peaked at 503 and 499 MiB with 24,000 entries here, 98% of the limit.
  const writer = await startService(
    'writer',
    {
      WRITER_BATCH_SIZE: '20000',
      DATABASE_URL: databaseUrl,
      REDIS_URL: server.url,
      STREAM_KEY: streamKey,
      STREAM_SHARDS: String(SHARDS),
      INSTANCE_ID: 'w1',
      LOG_LEVEL: 'warn',
    },
    { timeoutMs: 60_000 },
  );
  running.push(writer);
  onTestFailed(() => console.log(`writer output:\n${writer.proc.output(40)}`));
  return writer;
}

describe('writer memory with the largest entries ingestion stores', () => {
  const limit = chartMemoryLimitBytes('writer');

  it('drains a backlog of them inside the chart memory limit', async () => {
    const databaseUrl = await createTestDatabase('writer_mem_backlog');
    const streamKey = 'mem:backlog';
    await fillShards(streamKey);
    const writer = await startWriter(databaseUrl, streamKey);
    await waitAllAcked(redis, streamKey, SHARDS, 240_000);
    const peak = peakRssBytesOf(writer.proc.pid);
    console.log(`writer peak RSS draining ${ENTRIES} entries of ~4 KiB: ${(peak / MiB).toFixed(0)} MiB (limit ${limit / MiB} MiB)`);
    expect(await rowCount(databaseUrl)).toBe(ENTRIES);
    expect(peak).toBeLessThan(limit);
  }, 300_000);

  it('restarts with all of them in its pending list and re-reads them inside the chart memory limit', async () => {
    const databaseUrl = await createTestDatabase('writer_mem_pending');
    const streamKey = 'mem:pending';
    await fillShards(streamKey);
    // What a writer that read everything and died before writing leaves: all delivered to w1, pending.
    for (const key of shardKeys(streamKey, SHARDS)) {
      await redis.callBuffer('XREADGROUP', 'GROUP', PROCESSOR_GROUP, 'w1', 'COUNT', ENTRIES, 'STREAMS', key, '>');
    }
    const writer = await startWriter(databaseUrl, streamKey);
    await waitAllAcked(redis, streamKey, SHARDS, 240_000);
    const peak = peakRssBytesOf(writer.proc.pid);
    console.log(
      `writer peak RSS re-reading ${ENTRIES} pending entries of ~4 KiB: ${(peak / MiB).toFixed(0)} MiB (limit ${limit / MiB} MiB)`,
    );
    expect(await rowCount(databaseUrl)).toBe(ENTRIES);
    expect(peak).toBeLessThan(limit);
  }, 300_000);
});
