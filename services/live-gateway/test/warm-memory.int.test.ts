import {
  createPosition,
  encodePosition,
  MAX_POSITION_ENTRY_BYTES,
  MAX_STORED_IO_VALUE_BYTES,
  POSITION_FIELD,
  shardKey,
} from '@pitwall/contract';
import {
  chartMemoryLimitBytes,
  freePort,
  peakRssBytesOf,
  RedisServer,
  scrapeMetric,
  startService,
  type ServiceProcess,
} from '@pitwall/testkit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';

// Peak RSS of the built gateway warming its latest-position cache from a stream tail of the largest
// entries ingestion stores (MAX_POSITION_ENTRY_BYTES), against the chart's memory limit. The tail it
// may read is tuned up to the config's maximum (GATEWAY_WARM_TAIL_ENTRIES=1,000,000): the bytes bound
// (GATEWAY_WARM_MAX_BYTES, default) must hold whatever the entry count says. ~850 MB of entries: a
// redis-server of its own.

const ENTRIES = 200_000;
const MiB = 1024 * 1024;

let server: RedisServer;
let redis: Redis;
let gateway: ServiceProcess | undefined;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = server.client();
});
afterAll(async () => {
  await gateway?.proc.stop('SIGKILL');
  redis.disconnect();
  await server.destroy();
});

describe('live gateway warm-up memory', () => {
  it('warms from a tail of the largest stored entries inside the chart memory limit', async () => {
    const streamKey = 'warm:mem';
    const key = shardKey(streamKey, 0);
    const io = Array.from({ length: 15 }, (_, k) => ({ id: 10_000 + k, width: 0, raw: new Uint8Array(MAX_STORED_IO_VALUE_BYTES).fill(k) }));
    const now = Date.now();
    for (let i = 0; i < ENTRIES; i += 2_000) {
      const pipeline = redis.pipeline();
      for (let j = i; j < i + 2_000; j++) {
        const bytes = Buffer.from(
          encodePosition(
            createPosition({
              deviceId: String(356_307_040_000_000 + (j % 5_000)),
              recordedAtMs: BigInt(now - ENTRIES + j),
              receivedAtMs: BigInt(now - ENTRIES + j),
              latE7: 500_000_000,
              lonE7: 100_000_000,
              io,
            }),
          ),
        );
        if (j === 0) expect(bytes.length).toBeGreaterThan(MAX_POSITION_ENTRY_BYTES - 200);
        expect(bytes.length).toBeLessThanOrEqual(MAX_POSITION_ENTRY_BYTES);
        pipeline.xadd(key, '*', POSITION_FIELD, bytes);
      }
      await pipeline.exec();
    }

    gateway = await startService(
      'live-gateway',
      {
        REDIS_URL: server.url,
        STREAM_KEY: streamKey,
        STREAM_SHARDS: '1',
        INSTANCE_ID: 'warm-pod',
        GATEWAY_PORT: String(await freePort()),
        GATEWAY_WARM_TAIL_ENTRIES: '1000000',
        DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
        DIRECTUS_SECRET: 'warm-memory-secret-of-at-least-32-bytes',
        DIRECTUS_SERVICE_TOKEN: 'unused',
        LOG_LEVEL: 'warn',
      },
      { timeoutMs: 120_000 },
    );
    const running = gateway;
    onTestFailed(() => console.log(`live-gateway output:\n${running.proc.output(40)}`));
    const peak = peakRssBytesOf(running.proc.pid);
    const limit = chartMemoryLimitBytes('liveGateway');
    const warmed = await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_latest_cache_devices');
    console.log(
      `gateway peak RSS warming from ${ENTRIES} entries of ~4 KiB: ${(peak / MiB).toFixed(0)} MiB (limit ${limit / MiB} MiB), ${warmed} devices`,
    );
    expect(warmed).toBeGreaterThan(0);
    expect(peak).toBeLessThan(limit);
  }, 300_000);
});
