import { connect } from 'node:net';
import { trace } from '@opentelemetry/api';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createIngestion, ingestionEnv, type IngestionParts } from '@pitwall/ingestion';
import { createLogger, createMetricsRegistry, parseConfig, type Registry } from '@pitwall/platform';
import { RedisServer, sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { CODEC_8, encodeImeiHandshake, encodeTcpAvlPacket } from '@pitwall/teltonika';
import { TestDevice } from './helpers.js';
import { prng, randomPastRecord } from '../../teltonika/test/random.js';

// In-process: the parts of the service built by createIngestion, for what needs their internals.

const logger = createLogger('ingestion-test', 'silent');
let parts: IngestionParts | undefined;
let registry: Registry;

async function start(env: Record<string, string>): Promise<IngestionParts> {
  const config = parseConfig(ingestionEnv, {
    INGESTION_HOST: '127.0.0.1',
    INGESTION_TCP_PORT: '0',
    INGESTION_UDP_PORT: '0',
    METRICS_PORT: '0',
    STREAM_KEY: uniqueName('server'),
    ...env,
  });
  registry = createMetricsRegistry();
  parts = createIngestion(config, { logger, registry, tracer: trace.getTracer('test') });
  for (const service of parts.services) await service.start();
  return parts;
}

async function closed(reason: string): Promise<number> {
  const metric = await registry.getSingleMetric('pitwall_ingestion_connections_closed_total')?.get();
  return metric?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

afterEach(async () => {
  for (const service of [...(parts?.services ?? [])].reverse()) await service.close();
  parts = undefined;
});

const frame = () => encodeTcpAvlPacket(CODEC_8, [randomPastRecord(prng(5), CODEC_8)]);

describe('ingestion TCP limits', () => {
  it('answers 0x00 to an IMEI outside INGESTION_IMEI_ALLOWLIST and 0x01 to one inside', async () => {
    const { tcp } = await start({ REDIS_URL: sharedRedisUrl(), INGESTION_IMEI_ALLOWLIST: '356307040007001, 356307040007002' });
    const refused = await TestDevice.connect(tcp.boundPort);
    refused.write(encodeImeiHandshake('356307040007999'));
    await refused.closed;
    expect(refused.received.toString('hex')).toBe('00');
    const allowed = await TestDevice.handshake(tcp.boundPort, '356307040007002');
    allowed.write(frame());
    expect((await allowed.bytes(5)).toString('hex')).toBe('0100000001');
    allowed.close();
    expect(await closed('imei_rejected')).toBe(1);
  });

  it('refuses connections beyond INGESTION_MAX_CONNECTIONS and closes idle ones', async () => {
    const { tcp } = await start({ REDIS_URL: sharedRedisUrl(), INGESTION_MAX_CONNECTIONS: '2', INGESTION_IDLE_TIMEOUT_MS: '1000' });
    const first = await TestDevice.handshake(tcp.boundPort, '356307040007011');
    const second = await TestDevice.handshake(tcp.boundPort, '356307040007012');
    const third = await TestDevice.connect(tcp.boundPort);
    await third.closed;
    expect(third.received.length).toBe(0);
    expect(await closed('max_connections')).toBe(1);
    // Silent devices are closed by the idle timeout; the slots free up.
    await Promise.all([first.closed, second.closed]);
    expect(await closed('idle')).toBe(2);
    await waitFor('connections released', () => tcp.connectionCount === 0);
    const fourth = await TestDevice.handshake(tcp.boundPort, '356307040007013');
    fourth.close();
  });
});

describe('ingestion shutdown', () => {
  const redisServer = RedisServer.start();
  afterAll(async () => (await redisServer).destroy());

  it('stops accepting, finishes the packet in flight (acknowledged), then closes the socket', async () => {
    const server = await redisServer;
    const redis = new Redis(server.url);
    const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
    await redis.quit();
    const { tcp, health } = await start({ REDIS_URL: server.url, INGESTION_REDIS_TIMEOUT_MS: '60000' });
    const port = tcp.boundPort;
    const device = await TestDevice.handshake(port, '356307040007021');
    process.kill(pid, 'SIGSTOP');
    let closing: Promise<void> | undefined;
    try {
      device.write(frame());
      await waitFor('the packet in flight', () => tcp.inflightPackets === 1);
      health.markDraining();
      closing = tcp.close();
      // The listener is gone at once...
      await waitFor('listener closed', () => !tcp.listening);
      const refused = await new Promise<boolean>((resolve) => {
        const socket = connect({ port, host: '127.0.0.1' });
        socket.once('connect', () => {
          socket.destroy();
          resolve(false);
        });
        socket.once('error', () => resolve(true));
      });
      expect(refused).toBe(true);
      expect(device.received.toString('hex')).toBe('01');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // ...the packet in flight still completes and is acknowledged before the socket closes.
    await closing;
    await device.closed;
    expect(device.received.toString('hex')).toBe('0100000001');
    expect(health.notReadyReasons()).toContain('draining');
  });
});
