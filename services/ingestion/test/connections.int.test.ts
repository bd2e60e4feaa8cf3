import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectGarbage, rssBytesOf, scrapeMetric, sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { CODEC_8, encodeTcpAvlPacket } from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';
import { prng, randomPastRecord } from '../../teltonika/test/random.js';

// What one TCP connection may cost: deadlines for the IMEI handshake and for completing a started
// frame (slow-loris), a per-source-address cap, and the memory of idle and half-sent connections,
// measured on the service process.

let deadlines: Ingestion;
let memory: Ingestion;

const closedBy = (service: Ingestion, reason: string) =>
  scrapeMetric(service.metricsUrl, 'pitwall_ingestion_connections_closed_total', { reason });

let inspectPort = 0;

/** Resident set size of the measured service after a full garbage collection, bytes. */
async function rss(pid: number): Promise<number> {
  await collectGarbage(inspectPort);
  return rssBytesOf(pid);
}

/** The header of a frame declaring `dataBytes` and the first `sent` bytes of its data. */
function halfFrame(dataBytes: number, sent: number): Buffer {
  const buf = Buffer.alloc(8 + sent, 0x08);
  buf.writeUInt32BE(0, 0);
  buf.writeUInt32BE(dataBytes, 4);
  return buf;
}

beforeAll(async () => {
  [deadlines, memory] = await Promise.all([
    startIngestion({
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('connections'),
      INGESTION_HANDSHAKE_TIMEOUT_MS: '500',
      INGESTION_FRAME_TIMEOUT_MS: '500',
      INGESTION_MAX_CONNECTIONS_PER_ADDRESS: '5',
    }),
    // Deadlines far away: the connections stay while they are measured.
    startIngestion({
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('connections'),
      INGESTION_HANDSHAKE_TIMEOUT_MS: '600000',
      INGESTION_FRAME_TIMEOUT_MS: '600000',
      LOG_LEVEL: 'warn',
      // Port 0: the inspector picks a free port itself (no race with other tests' ports) and logs it.
      NODE_OPTIONS: '--inspect=127.0.0.1:0',
    }),
  ]);
  const line = await memory.proc.waitForLine(/Debugger listening on ws:\/\/127\.0\.0\.1:\d+/);
  inspectPort = Number(/127\.0\.0\.1:(\d+)/.exec(line)?.[1]);
});

afterAll(async () => {
  await Promise.all([deadlines?.proc.stop(), memory?.proc.stop()]);
});

describe('ingestion connections', () => {
  it('caps connections per source address and accepts again once one closes', async () => {
    const devices = await Promise.all(Array.from({ length: 5 }, (_, i) => TestDevice.handshake(deadlines.tcpPort, `35630704001000${i}`)));
    const sixth = await TestDevice.connect(deadlines.tcpPort);
    await sixth.closedByServer();
    expect(await closedBy(deadlines, 'max_connections_per_address')).toBe(1);
    devices[0]?.close();
    await waitFor(
      'the closed connection released',
      async () => (await scrapeMetric(deadlines.metricsUrl, 'pitwall_ingestion_tcp_connections')) === 4,
    );
    const again = await TestDevice.handshake(deadlines.tcpPort, '356307040010009');
    // Still usable: a packet is stored and acknowledged.
    again.write(encodeTcpAvlPacket(CODEC_8, [randomPastRecord(prng(1), CODEC_8)]));
    expect((await again.bytes(5)).readUInt32BE(1)).toBe(1);
    for (const device of [...devices, again]) device.close();
    await waitFor('all closed', async () => (await scrapeMetric(deadlines.metricsUrl, 'pitwall_ingestion_tcp_connections')) === 0);
  });

  it('closes a connection that sends one byte of the handshake and nothing more (slow-loris)', async () => {
    const device = await TestDevice.connect(deadlines.tcpPort);
    device.write(Buffer.from([0x00]));
    await device.closedByServer();
    expect(device.received).toHaveLength(0);
    expect(await closedBy(deadlines, 'handshake_timeout')).toBe(1);
    await deadlines.proc.waitForLine(/IMEI handshake not completed in time/);
  });

  it('closes a connection that connects and sends nothing', async () => {
    const device = await TestDevice.connect(deadlines.tcpPort);
    await device.closedByServer();
    expect(await closedBy(deadlines, 'handshake_timeout')).toBe(2);
  });

  it('closes a connection holding a half-sent frame, without acknowledging it', async () => {
    const device = await TestDevice.handshake(deadlines.tcpPort, '356307040010010');
    const frame = encodeTcpAvlPacket(
      CODEC_8,
      Array.from({ length: 20 }, () => randomPastRecord(prng(2), CODEC_8)),
    );
    device.write(frame.subarray(0, Math.floor(frame.length / 2)));
    await device.closedByServer();
    expect(device.received.toString('hex')).toBe('01');
    expect(await closedBy(deadlines, 'frame_timeout')).toBe(1);
  });

  it('keeps the memory of idle and half-sent connections bounded (RSS of the service measured)', async () => {
    const pid = memory.proc.pid;
    const open = async (n: number, first: number, payload?: Buffer): Promise<TestDevice[]> => {
      const devices: TestDevice[] = [];
      for (let i = 0; i < n; i++) {
        const device = await TestDevice.handshake(memory.tcpPort, `3563070402${String(first + i).padStart(5, '0')}`);
        if (payload) device.write(payload);
        devices.push(device);
      }
      return devices;
    };
    // Warm up every code path first, so the measurement sees connections, not code being compiled.
    for (const d of await open(20, 0, halfFrame(16_384, 16_000))) d.close();
    await waitFor('warm-up closed', async () => (await scrapeMetric(memory.metricsUrl, 'pitwall_ingestion_tcp_connections')) === 0);
    const before = await rss(pid);
    const N = 200;
    const idle = await open(N, 1_000);
    // Half-sent frames of the largest size a device may declare: the old 64 KiB cap and today's 16 KiB.
    const large = await open(N, 2_000, halfFrame(65_536, 60_000));
    const capped = await open(N, 3_000, halfFrame(16_384, 16_000));
    const connections = 3 * N;
    await waitFor('every half-sent byte read by the service', async () => {
      const buffered = await scrapeMetric(memory.metricsUrl, 'pitwall_ingestion_tcp_buffered_bytes');
      return buffered >= N * 16_008;
    });
    const buffered = await scrapeMetric(memory.metricsUrl, 'pitwall_ingestion_tcp_buffered_bytes');
    const perConnection = ((await rss(pid)) - before) / connections;
    console.info(
      `ingestion: ${connections} connections (idle, 64 KiB and 16 KiB frames half-sent): ${(perConnection / 1024).toFixed(1)} KiB RSS each, ${buffered} bytes buffered`,
    );
    // Frames over INGESTION_MAX_FRAME_BYTES are skipped unbuffered; the others hold what was sent.
    expect(buffered).toBeLessThanOrEqual(N * (16_384 + 12));
    expect(perConnection).toBeLessThan(28 * 1024);
    expect(
      await scrapeMetric(memory.metricsUrl, 'pitwall_ingestion_rejected_frames_total', { transport: 'tcp', reason: 'oversized' }),
    ).toBe(N);
    for (const d of [...idle, ...large, ...capped]) d.close();
  }, 120_000);
});
