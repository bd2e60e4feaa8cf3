import { createServer, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntryFields, parseEntries, shardKey } from '@pitwall/contract';
import { startSimulation, TRACK } from '@pitwall/simulator';
import { freePort, sharedRedisUrl, startService, uniqueName, type ServiceProcess } from '@pitwall/testkit';

// The simulator against the built ingestion service and the run's Redis: what it reports as
// acknowledged is exactly what the stream holds.

const streamKey = uniqueName('simulator');
const redis = new Redis(sharedRedisUrl());
let service: ServiceProcess;
let port: number;

beforeAll(async () => {
  port = await freePort();
  service = await startService('ingestion', {
    REDIS_URL: sharedRedisUrl(),
    STREAM_KEY: streamKey,
    INGESTION_TCP_PORT: String(port),
    INGESTION_UDP_PORT: String(port),
    INGESTION_HOST: '127.0.0.1',
  });
});

afterAll(async () => {
  await service?.proc.stop();
  await redis.quit();
});

async function stored(firstIndex: number, devices: number) {
  const reply: unknown = await redis.callBuffer('XRANGE', shardKey(streamKey, 0), '-', '+');
  const low = 356307040000000 + firstIndex;
  return parseEntries(reply)
    .map((e) => decodeEntryFields(e.fields))
    .filter((p) => Number(p.deviceId) >= low && Number(p.deviceId) < low + devices);
}

const nearTrack = (latE7: number, lonE7: number) =>
  TRACK.some((p) => Math.abs(p.lat - latE7 / 1e7) < 0.0003 && Math.abs(p.lon - lonE7 / 1e7) < 0.0005);

for (const transport of ['tcp', 'udp'] as const) {
  describe(`simulator over ${transport}`, () => {
    it('drives devices whose acknowledged records are exactly the stored positions', async () => {
      const firstIndex = transport === 'tcp' ? 100 : 200;
      const devices = 25;
      const simulation = startSimulation({ port, devices, rate: 20, transport, firstIndex, maxRecordsPerPacket: 5 });
      try {
        await expect.poll(() => simulation.stats().acked, { timeout: 20_000 }).toBeGreaterThan(devices * 10);
        expect(await simulation.drain(20_000)).toBe(true);
      } finally {
        await simulation.stop();
      }
      const stats = simulation.stats();
      expect(stats.acked).toBe(stats.generated);
      expect(stats.pending).toBe(0);
      const acked = [...simulation.ackedRecords()];
      expect(acked).toHaveLength(stats.acked);
      const positions = await stored(firstIndex, devices);
      const storedKeys = positions.map((p) => `${p.deviceId}/${p.recordedAtMs}`).sort();
      expect(storedKeys).toEqual(acked.map((r) => `${r.imei}/${r.timestampMs}`).sort());
      // Per device: strictly increasing timestamps, positions on the circuit, racing speeds.
      const byDevice = new Map<string, typeof positions>();
      for (const p of positions) byDevice.set(p.deviceId, [...(byDevice.get(p.deviceId) ?? []), p]);
      expect(byDevice.size).toBe(devices);
      for (const list of byDevice.values()) {
        for (let i = 1; i < list.length; i++) expect(list[i]?.recordedAtMs).toBeGreaterThan(list[i - 1]?.recordedAtMs ?? 0n);
      }
      for (const p of positions) {
        expect(nearTrack(p.latE7, p.lonE7)).toBe(true);
        expect(p.speedKmh).toBeGreaterThan(20);
        expect(p.speedKmh).toBeLessThan(340);
        expect(p.satellites).toBeGreaterThanOrEqual(6);
      }
    });
  });
}

describe('simulator over tcp against a server that never answers the handshake', () => {
  it('gives the connection up after the ack timeout and dials again, as a tracker does', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    const simulation = startSimulation({
      port: address.port,
      devices: 2,
      rate: 10,
      ackTimeoutMs: 200,
      reconnectMinMs: 10,
      reconnectMaxMs: 20,
    });
    try {
      await expect.poll(() => simulation.stats().connectTimeouts, { timeout: 10_000 }).toBeGreaterThanOrEqual(4);
      expect(simulation.stats().reconnects).toBeGreaterThanOrEqual(2);
      expect(sockets.length).toBeGreaterThanOrEqual(4);
      expect(simulation.stats().acked).toBe(0);
    } finally {
      await simulation.stop();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
