import { type Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntryFields, parseEntries, shardKey } from '@pitwall/contract';
import { startSimulation } from '@pitwall/simulator';
import { RedisServer, scrapeMetric, uniqueName, waitFor } from '@pitwall/testkit';
import { CODEC_8_EXTENDED, encodeTcpAvlPacket } from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';
import { prng, randomPastRecord } from '../../teltonika/test/random.js';

// Redis as production runs it (AOF, fsync always), killed and hung under a live device fleet: an
// acknowledgement must only ever follow a durable write, and devices' resends must heal the gap.

let redisServer: RedisServer;
let service: Ingestion;
const streamKey = uniqueName('outage');

async function storedKeys(redis: Redis): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const reply: unknown = await redis.callBuffer('XRANGE', shardKey(streamKey, 0), '-', '+');
  for (const entry of parseEntries(reply)) {
    const position = decodeEntryFields(entry.fields);
    const key = `${position.deviceId}/${position.recordedAtMs}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function deferredStoreFailures(): Promise<number> {
  return scrapeMetric(service.metricsUrl, 'pitwall_ingestion_deferred_packets_total', { transport: 'tcp', reason: 'store_failed' });
}

beforeAll(async () => {
  redisServer = await RedisServer.start({ durable: true });
  service = await startIngestion({ REDIS_URL: redisServer.url, STREAM_KEY: streamKey, INGESTION_REDIS_TIMEOUT_MS: '1000' });
});

afterAll(async () => {
  await service?.proc.stop();
  await redisServer?.destroy();
});

describe('ingestion when Redis fails', () => {
  it('acknowledges nothing unwritten while Redis is killed, and stores the resends after it restarts', async () => {
    const simulation = startSimulation({
      port: service.tcpPort,
      devices: 20,
      rate: 20,
      maxRecordsPerPacket: 10,
      reconnectMinMs: 50,
      reconnectMaxMs: 300,
      ackTimeoutMs: 3_000,
    });
    try {
      await waitFor('acknowledged records before the kill', () => simulation.stats().acked >= 300, { timeoutMs: 20_000 });
      const failuresBefore = await deferredStoreFailures();
      await redisServer.kill();
      await waitFor('packets refused while Redis is down', async () => (await deferredStoreFailures()) > failuresBefore + 5, {
        timeoutMs: 20_000,
      });
      expect((await fetch(`${service.metricsUrl}/readyz`)).status).toBe(503);
      const ackedDuringOutage = simulation.stats().acked;
      await redisServer.restart();
      expect(await simulation.drain(60_000)).toBe(true);
      const stats = simulation.stats();
      expect(stats.acked).toBe(stats.generated);
      expect(stats.acked).toBeGreaterThan(ackedDuringOutage);
      expect(stats.resent).toBeGreaterThan(0);

      const redis = redisServer.client();
      try {
        const stored = await storedKeys(redis);
        const acked = [...simulation.ackedRecords()];
        expect(acked).toHaveLength(stats.acked);
        const missing = acked.filter((r) => !stored.has(`${r.imei}/${r.timestampMs}`));
        expect(missing).toEqual([]);
      } finally {
        await redis.quit();
      }
    } finally {
      await simulation.stop();
    }
    expect(service.proc.running).toBe(true);
  });

  it('closes the connection without acknowledging when Redis hangs, and acknowledges the resend once it answers', async () => {
    const redis = redisServer.client();
    const info = await redis.info('server');
    await redis.quit();
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    expect(pid).toBeGreaterThan(0);
    await waitFor('ingestion ready', async () => (await fetch(`${service.metricsUrl}/readyz`)).status === 200);
    const rand = prng(99);
    const frame = encodeTcpAvlPacket(CODEC_8_EXTENDED, [
      randomPastRecord(rand, CODEC_8_EXTENDED),
      randomPastRecord(rand, CODEC_8_EXTENDED),
    ]);
    const imei = '356307040009001';
    const device = await TestDevice.handshake(service.tcpPort, imei);
    process.kill(pid, 'SIGSTOP');
    try {
      device.write(frame);
      await device.closed;
      expect(device.received.toString('hex')).toBe('01');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await service.proc.waitForLine(/Redis did not confirm the packet in time/);
    const retry = await TestDevice.handshake(service.tcpPort, imei);
    retry.write(frame);
    expect((await retry.bytes(5)).toString('hex')).toBe('0100000002');
    retry.close();
  });
});
