import { afterAll, describe, expect, it } from 'vitest';
import { Counter, createMetricsRegistry, HealthServer } from '@pitwall/platform';

describe('HealthServer', () => {
  const registry = createMetricsRegistry();
  const counter = new Counter({ name: 'pitwall_test_things_total', help: 'things', registers: [registry] });
  const server = new HealthServer(registry, 0, '127.0.0.1');
  let redisUp = true;
  server.addReadinessCheck('redis', () => (redisUp ? undefined : 'disconnected'));
  afterAll(() => server.close());

  it('serves /metrics, /healthz and /readyz, and fails readiness on a failing check or when draining', async () => {
    await server.start();
    const base = `http://127.0.0.1:${server.boundPort}`;
    counter.inc(3);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('pitwall_test_things_total 3');
    expect(metrics).toContain('process_cpu_user_seconds_total');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    redisUp = false;
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toContain('redis: disconnected');
    redisUp = true;
    server.markDraining();
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('closes idempotently', async () => {
    await Promise.all([server.close(), server.close()]);
    await server.close();
  });
});
