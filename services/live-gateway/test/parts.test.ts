import { describe, expect, it } from 'vitest';
import { createMetricsRegistry } from '@pitwall/platform';
import { parseConfig } from '@pitwall/platform';
import { liveGatewayEnv } from '../src/config.js';
import { parseEntries } from '../src/events/event-directory.js';
import { LatestPositions } from '../src/fanout/latest-positions.js';
import { createGatewayMetrics } from '../src/metrics.js';
import type { LivePosition } from '../src/protocol/position-json.js';
import { ConcurrencyLimiter } from '../src/util/limiter.js';

function position(deviceId: string, ts: number): LivePosition {
  return { deviceId, ts, rx: ts, body: `"ts":${ts}}` };
}

describe('latest-position cache', () => {
  it('keeps the newest position of each device by device time', () => {
    const latest = new LatestPositions(10);
    expect(latest.update(position('a', 10))).toBe(true);
    expect(latest.update(position('a', 5))).toBe(false);
    expect(latest.get('a')?.ts).toBe(10);
    expect(latest.update(position('a', 20))).toBe(true);
    expect(latest.get('a')?.ts).toBe(20);
  });

  it('is bounded: the least recently updated device goes first', () => {
    const latest = new LatestPositions(2);
    latest.update(position('a', 1));
    latest.update(position('b', 1));
    latest.update(position('a', 2));
    latest.update(position('c', 1));
    expect(latest.size).toBe(2);
    expect(latest.get('b')).toBeUndefined();
    expect(latest.get('a')?.ts).toBe(2);
    expect(latest.get('c')?.ts).toBe(1);
  });
});

describe('event entries from Directus', () => {
  it('reads device IMEI and label, skipping entries without a device and duplicates', () => {
    const devices = parseEntries({
      data: [
        { label: '12', device: { imei: '352093086403655' } },
        { label: 7, device: { imei: '352093086403656' } },
        { label: null, device: { imei: '352093086403657' } },
        { label: 'no device', device: null },
        { label: 'dup', device: { imei: '352093086403655' } },
      ],
    });
    expect(devices.map((d) => [d.deviceId, d.label])).toEqual([
      ['352093086403655', '12'],
      ['352093086403656', '7'],
      ['352093086403657', ''],
    ]);
    expect(devices[0]?.prefix).toBe('{"device_id":"352093086403655","label":"12",');
  });

  it('refuses an answer without a data list', () => {
    expect(() => parseEntries({ errors: [] })).toThrow(/no data list/);
  });
});

describe('concurrency limiter', () => {
  it('runs at most N at once and refuses beyond its queue', async () => {
    const limiter = new ConcurrencyLimiter(2, 1);
    let running = 0;
    let peak = 0;
    const releases: (() => void)[] = [];
    const task = () =>
      new Promise<number>((resolve) => {
        running++;
        peak = Math.max(peak, running);
        releases.push(() => {
          running--;
          resolve(1);
        });
      });
    const full = () => new Error('full');
    const a = limiter.run(task, full);
    const b = limiter.run(task, full);
    const c = limiter.run(task, full);
    await expect(limiter.run(task, full)).rejects.toThrow('full');
    await Promise.resolve();
    expect(running).toBe(2);
    releases.shift()?.();
    await a;
    await new Promise((resolve) => setImmediate(resolve));
    expect(running).toBe(2);
    releases.shift()?.();
    releases.shift()?.();
    await expect(Promise.all([b, c])).resolves.toEqual([1, 1]);
    expect(peak).toBe(2);
  });
});

describe('configuration', () => {
  it('needs DIRECTUS_SERVICE_TOKEN and has documented defaults', () => {
    expect(() => parseConfig(liveGatewayEnv, {})).toThrow(/DIRECTUS_SERVICE_TOKEN/);
    const config = parseConfig(liveGatewayEnv, { DIRECTUS_SERVICE_TOKEN: 'x' });
    expect(config).toMatchObject({
      GATEWAY_PORT: 8080,
      DIRECTUS_URL: 'http://127.0.0.1:8055',
      REDIS_URL: 'redis://127.0.0.1:6379',
      STREAM_KEY: 'pitwall:positions',
      STREAM_SHARDS: 1,
      METRICS_PORT: 9464,
      GATEWAY_BATCH_WINDOW_MS: 100,
      GATEWAY_REVALIDATE_INTERVAL_MS: 60_000,
    });
    expect(config.DIRECTUS_SECRET).toBeUndefined();
  });

  it('names a malformed variable', () => {
    expect(() => parseConfig(liveGatewayEnv, { DIRECTUS_SERVICE_TOKEN: 'x', REDIS_URL: 'localhost:6379' })).toThrow(/REDIS_URL/);
    expect(() => parseConfig(liveGatewayEnv, { DIRECTUS_SERVICE_TOKEN: 'x', GATEWAY_BATCH_WINDOW_MS: 'soon' })).toThrow(
      /GATEWAY_BATCH_WINDOW_MS/,
    );
  });

  it('registers only pitwall_live_gateway_ metrics of its own', async () => {
    const registry = createMetricsRegistry();
    createGatewayMetrics(registry);
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('pitwall_'));
    expect(names.length).toBeGreaterThan(20);
    expect(names.every((n) => n.startsWith('pitwall_live_gateway_'))).toBe(true);
  });
});
