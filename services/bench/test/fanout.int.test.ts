import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { FanoutRun } from '../src/suites/fanout/fanout-run.js';
import { stepUp, verdictOf } from '../src/suites/fanout/stepping.js';
import type { BenchDevice } from '../src/suites/live-gateway/feed.js';
import { startSystem, type SystemName } from '../src/suites/live-gateway/systems.js';

// The fanout bench's counting, end to end with real servers (the bench's bare uWS loop and Socket.IO
// with the Redis streams adapter, fed through a real Redis) and real viewer processes (the built
// bench: make test builds first): every frame a server published reaches every viewer of its event
// and is counted exactly once, and with every frame read whole, every position appended to the
// stream is found once per viewer of its event. No timing is asserted.

const EVENTS = [1, 2, 3, 4, 5];
const devices: BenchDevice[] = EVENTS.flatMap((event) =>
  Array.from({ length: 4 }, (_, i) => ({ imei: String(356_307_040_000_000 + event * 100 + i), event, label: `#${i} car` })),
);
const dir = mkdtempSync(join(tmpdir(), 'pitwall-fanout-test-'));
const devicesFile = join(dir, 'devices.json');
writeFileSync(devicesFile, JSON.stringify(devices));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each<SystemName>(['bare uWS', 'Socket.IO'])('fanout counting against %s', (system) => {
  it('counts every published frame once per viewer and finds every position, step after step, up and down', async () => {
    const streamKey = uniqueName('fanout-test');
    const server = await startSystem(system, { redis: { url: sharedRedisUrl() }, devicesFile }, streamKey, { windowMs: 50 });
    const run = new FanoutRun(server, {
      redisUrl: sharedRedisUrl(),
      streamKey,
      token: 'unused',
      events: EVENTS,
      devices,
      positionsPerSecond: 300,
      stepMs: 700,
      sampleEvery: 1,
      cpus: { server: [0], clients: [0, 0] },
      windowMs: 50,
    });
    try {
      const stepped = await stepUp([10, 30], (viewers) => run.step(viewers), { windowMs: 50, latencyBudgetMs: 60_000, minDelivered: 1 });
      expect(stepped.steps.map((s) => s.viewers)).toEqual([10, 30]);
      for (const step of stepped.steps) {
        expect(step.failedViewers).toBe(0);
        expect(step.lostViewers).toBe(0);
        expect(step.positionsProduced).toBeGreaterThan(0);
        expect(step.offeredFrames).toBeGreaterThan(0);
        expect(step.deliveredFrames).toBe(step.offeredFrames);
        // Every position of the stream, once in the frames of each viewer of its event.
        expect(step.sampledPositions).toBe((step.positionsProduced * step.viewers) / EVENTS.length);
        expect(verdictOf(step, { windowMs: 50, latencyBudgetMs: 60_000, minDelivered: 1 })).toBe('served');
      }
      expect(stepped.stoppedBy).toBe('schedule exhausted');
      // Down again (a refinement step): the viewers that leave take their share of every event.
      const down = await run.step(20);
      expect(down.lostViewers).toBe(0);
      expect(down.deliveredFrames).toBe(down.offeredFrames);
      expect(down.sampledPositions).toBe((down.positionsProduced * 20) / EVENTS.length);
    } finally {
      await run.close();
      await server.stop();
    }
  });
});

describe('fanout probes', () => {
  it('counts every frame of the counting viewers, which read in batches, and reads every frame of the probes whole', async () => {
    const streamKey = uniqueName('fanout-test');
    const server = await startSystem('bare uWS', { redis: { url: sharedRedisUrl() }, devicesFile }, streamKey, { windowMs: 50 });
    // 20 viewers over 5 events: viewers 0-4 (one per event) are the probes, 5-19 only count.
    const run = new FanoutRun(server, {
      redisUrl: sharedRedisUrl(),
      streamKey,
      token: 'unused',
      events: EVENTS,
      devices,
      positionsPerSecond: 300,
      stepMs: 700,
      sampleEvery: 4,
      cpus: { server: [0], clients: [0] },
      windowMs: 50,
    });
    try {
      const step = await run.step(20);
      expect(step.deliveredFrames).toBe(step.offeredFrames);
      expect(step.positionsProduced).toBeGreaterThan(0);
      expect(step.sampledPositions).toBe(step.positionsProduced);
    } finally {
      await run.close();
      await server.stop();
    }
  });
});
