import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMetricsRegistry } from '@pitwall/platform';
import { parseConfig } from '@pitwall/platform';
import { liveGatewayEnv } from '../src/config.js';
import { inWindow, parseEntries } from '../src/events/event-directory.js';
import { retryAfterMs } from '../src/directus/directus-client.js';
import { Admission, clientAddress } from '../src/server/admission.js';
import { drainSpreadMs } from '../src/server/gateway-server.js';
import { assertNativeUws, isNativeUws } from '../src/server/native-uws.js';
import { UwsNotNativeError } from '../src/server/uws-not-native-error.js';
import { createRequire } from 'node:module';
import { SharedDeadlines } from '../src/util/shared-deadlines.js';
import { TokenBucket } from '../src/util/token-bucket.js';
import { TtlCache } from '../src/util/ttl-cache.js';
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
    expect(latest.update(position('a', 10))).toBe('kept');
    expect(latest.update(position('a', 5))).toBe('stale');
    expect(latest.get('a')?.ts).toBe(10);
    expect(latest.update(position('a', 20))).toBe('kept');
    expect(latest.get('a')?.ts).toBe(20);
  });

  it('is the monotonic filter: the same device time twice is stale, and one far ahead of the clock never pins a device', () => {
    const now = 1_000_000;
    const latest = new LatestPositions(10, { maxFutureMs: 300_000, now: () => now });
    expect(latest.update(position('a', now))).toBe('kept');
    expect(latest.update(position('a', now))).toBe('stale');
    expect(latest.update(position('a', now + 10 * 365 * 86_400_000))).toBe('future');
    expect(latest.get('a')?.ts).toBe(now);
    expect(latest.update(position('a', now + 1_000))).toBe('kept');
    expect(latest.update(position('a', now + 300_000))).toBe('kept');
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
  const event = { starts_at: '2026-06-01T08:00:00.000Z', ends_at: '2026-06-01T18:00:00.000Z' };

  it('reads device IMEI and label, skipping entries without a device and duplicates, and the event window', () => {
    const parsed = parseEntries({
      data: [
        { label: '12', device: { imei: '352093086403655' }, event },
        { label: 7, device: { imei: '352093086403656' }, event },
        { label: null, device: { imei: '352093086403657' }, event },
        { label: 'no device', device: null, event },
        { label: 'dup', device: { imei: '352093086403655' }, event },
      ],
    });
    expect(parsed.devices.map((d) => [d.deviceId, d.label])).toEqual([
      ['352093086403655', '12'],
      ['352093086403656', '7'],
      ['352093086403657', ''],
    ]);
    expect(parsed.devices[0]?.prefix).toBe('{"device_id":"352093086403655","label":"12",');
    expect(parsed.startsAtMs).toBe(Date.parse(event.starts_at));
    expect(parsed.endsAtMs).toBe(Date.parse(event.ends_at));
  });

  it('leaves an unset start or end open', () => {
    const parsed = parseEntries({ data: [{ label: '1', device: { imei: '1' }, event: { starts_at: null, ends_at: null } }] });
    expect(parsed.startsAtMs).toBe(Number.NEGATIVE_INFINITY);
    expect(parsed.endsAtMs).toBe(Number.POSITIVE_INFINITY);
    expect(inWindow({ fromMs: parsed.startsAtMs, toMs: parsed.endsAtMs }, 0)).toBe(true);
  });

  it('refuses an answer without a data list, without the event window, or with an unreadable time', () => {
    expect(() => parseEntries({ errors: [] })).toThrow(/no data list/);
    expect(() => parseEntries({ data: [{ label: '1', device: { imei: '1' }, event: 3 }] })).toThrow(/event window/);
    expect(() => parseEntries({ data: [{ label: '1', device: { imei: '1' }, event: { starts_at: 'soon' } }] })).toThrow(/unreadable/);
  });

  it('puts a position inside a window by its device time, bounds included', () => {
    const window = { fromMs: 100, toMs: 200 };
    expect([99, 100, 150, 200, 201].map((ts) => inWindow(window, ts))).toEqual([false, true, true, true, false]);
  });
});

describe('concurrency limiter', () => {
  it('runs at most N at once and refuses beyond its queue', async () => {
    const limiter = new ConcurrencyLimiter(2, 1, 60_000);
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
    const refuse = (reason: string) => new Error(reason);
    const a = limiter.run(task, refuse);
    const b = limiter.run(task, refuse);
    const c = limiter.run(task, refuse);
    await expect(limiter.run(task, refuse)).rejects.toThrow('full');
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
    expect(limiter.active).toBe(0);
  });

  it('refuses a waiter whose wait exceeded the limit when a slot frees, and hands the slot to the next', async () => {
    let now = 0;
    const limiter = new ConcurrencyLimiter(1, 10, 1_000, () => now);
    let release = () => {};
    const first = limiter.run(
      () => new Promise<string>((resolve) => (release = () => resolve('first'))),
      (r) => new Error(r),
    );
    const late = limiter.run(
      () => Promise.resolve('late'),
      (r) => new Error(r),
    );
    now = 500;
    const onTime = limiter.run(
      () => Promise.resolve('on time'),
      (r) => new Error(r),
    );
    now = 1_200;
    release();
    await expect(first).resolves.toBe('first');
    await expect(late).rejects.toThrow('waited');
    await expect(onTime).resolves.toBe('on time');
    expect(limiter.active).toBe(0);
    expect(limiter.queued).toBe(0);
  });
});

describe('token bucket', () => {
  it('allows its burst, then its rate, and says how long until the next token', () => {
    const bucket = new TokenBucket(2, 3);
    // A client's bucket: one number, 0 when fresh (full).
    let state = 0;
    const take = (nowMs: number): boolean => {
      const next = bucket.take(state, nowMs);
      if (next !== undefined) state = next;
      return next !== undefined;
    };
    expect([take(0), take(0), take(0), take(0)]).toEqual([true, true, true, false]);
    expect(bucket.waitMs(state, 0)).toBe(500);
    expect(take(499)).toBe(false);
    expect(bucket.waitMs(state, 499)).toBe(1);
    expect(take(500)).toBe(true);
    expect(take(10_000)).toBe(true);
    expect(take(10_000)).toBe(true);
    expect(take(10_000)).toBe(true);
    expect(take(10_000)).toBe(false);
    expect(bucket.waitMs(state, 10_000)).toBe(500);
    expect(bucket.waitMs(state, 10_500)).toBe(0);
  });

  it('never allows a burst below one token', () => {
    const bucket = new TokenBucket(0.25, 0.5);
    expect(bucket.take(0, 1_000_000)).toBeUndefined();
    expect(bucket.waitMs(0, 1_000_000)).toBe(2_000);
  });
});

describe('TTL cache', () => {
  it('forgets expired entries and stays within its size, dropping expired then oldest entries', () => {
    let now = 0;
    const cache = new TtlCache<string>(2, () => now);
    cache.set('a', 'A', 100);
    cache.set('b', 'B', 50);
    expect(cache.get('a')).toBe('A');
    now = 60;
    expect(cache.get('b')).toBeUndefined();
    cache.set('b', 'B', 200);
    cache.set('c', 'C', 200);
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('c')).toBe('C');
    cache.set('d', 'D', now);
    expect(cache.get('d')).toBeUndefined();
  });
});

describe('Directus Retry-After', () => {
  it('reads seconds and HTTP dates', () => {
    expect(retryAfterMs('3')).toBe(3_000);
    expect(retryAfterMs('0')).toBe(0);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(retryAfterMs(null)).toBeUndefined();
    expect(retryAfterMs('soon')).toBeUndefined();
  });
});

describe('connection admission', () => {
  const options = { maxConnections: 4, maxUnauthenticated: 2, maxPerAddress: 3, allowedOrigins: [] };

  it('makes room by an unauthenticated connection at either cap, and refuses only when every connection is authenticated', () => {
    const admission = new Admission(options);
    admission.opened('a');
    admission.opened('b');
    expect(admission.refusal('c', '')).toBe('evict');
    admission.authenticated();
    expect(admission.refusal('c', '')).toBeUndefined();
    admission.opened('c');
    admission.authenticated();
    admission.opened('d');
    expect(admission.unauthenticated).toBe(2);
    admission.closed('d', false);
    admission.opened('d');
    admission.authenticated();
    expect(admission.connections).toBe(4);
    expect(admission.refusal('e', '')).toBe('evict');
    admission.authenticated();
    expect(admission.refusal('e', '')).toBe('full');
    admission.closed('a', true);
    expect(admission.connections).toBe(3);
    expect(admission.unauthenticated).toBe(0);
  });

  it('caps connections per address', () => {
    const admission = new Admission({ ...options, maxUnauthenticated: 10, maxConnections: 10 });
    for (let i = 0; i < 3; i++) admission.opened('a');
    expect(admission.refusal('a', '')).toBe('address_full');
    expect(admission.refusal('b', '')).toBeUndefined();
    admission.closed('a', false);
    expect(admission.refusal('a', '')).toBeUndefined();
  });

  it('admits only listed origins when a list is set, and requests without an Origin', () => {
    const admission = new Admission({ ...options, allowedOrigins: ['https://map.pitwall.example'] });
    expect(admission.refusal('a', 'https://evil.example')).toBe('origin');
    expect(admission.refusal('a', 'https://MAP.pitwall.example')).toBeUndefined();
    expect(admission.refusal('a', '')).toBeUndefined();
    expect(new Admission(options).refusal('a', 'https://evil.example')).toBeUndefined();
  });

  it('reads the client address from the configured header, else the peer', () => {
    expect(clientAddress('10.0.0.1', undefined)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '')).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '203.0.113.7')).toBe('203.0.113.7');
    expect(clientAddress('10.0.0.1', '198.51.100.1, 203.0.113.7')).toBe('203.0.113.7');
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
      GATEWAY_BATCH_WINDOW_MS: 250,
      GATEWAY_REVALIDATE_INTERVAL_MS: 60_000,
    });
    expect(config.DIRECTUS_SECRET).toBeUndefined();
    expect(config.GATEWAY_ALLOWED_ORIGINS).toEqual([]);
    expect(config.GATEWAY_CLIENT_ADDRESS_HEADER).toBeUndefined();
  });

  it('refuses a DIRECTUS_SECRET shorter than 32 bytes (an HS256 key)', () => {
    const base = { DIRECTUS_SERVICE_TOKEN: 'x' };
    expect(() => parseConfig(liveGatewayEnv, { ...base, DIRECTUS_SECRET: 'k' })).toThrow(/DIRECTUS_SECRET.*32 bytes/);
    expect(() => parseConfig(liveGatewayEnv, { ...base, DIRECTUS_SECRET: 'x'.repeat(31) })).toThrow(/DIRECTUS_SECRET/);
    expect(parseConfig(liveGatewayEnv, { ...base, DIRECTUS_SECRET: 'x'.repeat(32) }).DIRECTUS_SECRET).toHaveLength(32);
  });

  it('reads the origin list and the client address header', () => {
    const config = parseConfig(liveGatewayEnv, {
      DIRECTUS_SERVICE_TOKEN: 'x',
      GATEWAY_ALLOWED_ORIGINS: 'https://a.example, https://b.example',
      GATEWAY_CLIENT_ADDRESS_HEADER: 'X-Real-IP',
    });
    expect(config.GATEWAY_ALLOWED_ORIGINS).toEqual(['https://a.example', 'https://b.example']);
    expect(config.GATEWAY_CLIENT_ADDRESS_HEADER).toBe('x-real-ip');
    expect(() => parseConfig(liveGatewayEnv, { DIRECTUS_SERVICE_TOKEN: 'x', GATEWAY_CLIENT_ADDRESS_HEADER: 'x real' })).toThrow(
      /GATEWAY_CLIENT_ADDRESS_HEADER/,
    );
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

describe('native uWebSockets.js', () => {
  it('tells the native binding from the JavaScript fallback the npm build loads on an ABI it has no binary for', () => {
    expect(isNativeUws()).toBe(true);
    // The fallback module itself, as uws.js requires it when the binary does not load.
    const fallback = createRequire(import.meta.url)('uWebSockets.js/dist/index.js') as object;
    expect(isNativeUws(fallback)).toBe(false);
    expect(() => assertNativeUws(fallback)).toThrow(UwsNotNativeError);
    expect(() => assertNativeUws(fallback)).toThrow(/not its native build on Node/);
  });
});

describe('drainSpreadMs', () => {
  it('spreads a drained pod viewers at the configured rate, between 1 s and 30 s', () => {
    expect(drainSpreadMs(0, 1_000)).toBe(1_000);
    expect(drainSpreadMs(500, 1_000)).toBe(1_000);
    expect(drainSpreadMs(5_000, 1_000)).toBe(5_000);
    expect(drainSpreadMs(5_001, 1_000)).toBe(5_001);
    expect(drainSpreadMs(5_000, 250)).toBe(20_000);
    expect(drainSpreadMs(100_000, 1_000)).toBe(30_000);
  });
});

describe('shared deadlines', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs every item of an instant on one timer, at the instant and not before; a deleted item is not run', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const due: string[] = [];
    const deadlines = new SharedDeadlines<string>((item) => due.push(`${item}@${Date.now()}`));
    for (const item of ['a', 'b', 'c']) deadlines.add(1_005_000, item);
    deadlines.add(1_009_000, 'd');
    expect(deadlines.timerCount).toBe(2);
    deadlines.delete(1_005_000, 'b');
    await vi.advanceTimersByTimeAsync(4_999);
    expect(due).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(due).toEqual(['a@1005000', 'c@1005000']);
    expect(deadlines.timerCount).toBe(1);
    deadlines.delete(1_009_000, 'd');
    expect(deadlines.timerCount).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(due).toHaveLength(2);
  });
});
