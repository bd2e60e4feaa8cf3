import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import {
  collectGarbage,
  freePort,
  heapUsedAfterGc,
  rssBytesOf,
  sharedRedisUrl,
  startService,
  uniqueName,
  waitFor,
  type ServiceProcess,
} from '@pitwall/testkit';
import { TestClient } from './support/client.js';
import { directusLikeToken } from './support/tokens.js';

// Memory a hostile client can make the gateway hold, measured on the built service (node dist/main.js,
// with an inspector for full garbage collections): RSS for the sockets' buffers (native, outside the
// V8 heap), the heap after a full GC for the gateway's own bookkeeping. Bounds are generous: what they
// tell apart is megabytes per client against a bounded few hundred kilobytes.
const SECRET = 'memory-int-secret-of-at-least-32-bytes';
const MiB = 1024 * 1024;

interface Inspected {
  service: ServiceProcess;
  url: string;
  inspectPort: number;
}

const running: Inspected[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((g) => g.service.proc.stop()));
});

async function startInspectedGateway(env: Record<string, string> = {}): Promise<Inspected> {
  const port = await freePort();
  const inspectPort = await freePort();
  const service = await startService('live-gateway', {
    NODE_OPTIONS: `--inspect=127.0.0.1:${inspectPort}`,
    REDIS_URL: sharedRedisUrl(),
    STREAM_KEY: uniqueName('mem'),
    INSTANCE_ID: uniqueName('pod'),
    GATEWAY_PORT: String(port),
    DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
    DIRECTUS_SECRET: SECRET,
    DIRECTUS_SERVICE_TOKEN: 'unused',
    LOG_LEVEL: 'warn',
    ...env,
  });
  onTestFailed(() => console.log(`live-gateway output:\n${service.proc.output(40)}`));
  const gateway = { service, url: `ws://127.0.0.1:${port}`, inspectPort };
  running.push(gateway);
  return gateway;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('live gateway memory under hostile clients', () => {
  it('drops authenticated clients that send requests but never read: their unsent replies do not pile up', async () => {
    const gateway = await startInspectedGateway();
    const token = await directusLikeToken(SECRET);
    // Warm up (first connections allocate uWS and V8 structures for good), then the baseline.
    await Promise.all(Array.from({ length: 3 }, async () => (await TestClient.authenticated(gateway.url, token)).close()));
    await collectGarbage(gateway.inspectPort);
    const before = rssBytesOf(gateway.service.proc.pid);

    const clients = await Promise.all(Array.from({ length: 10 }, () => TestClient.authenticated(gateway.url, token)));
    for (const client of clients) client.setReading(false);
    // Each ping's pong carries the 128-character uid back: ~170 bytes a reply, 60,000 of them a client
    // (10 MB, more than the kernel's socket buffers and the old 4 MB uWS backpressure limit together).
    const ping = JSON.stringify({ type: 'ping', uid: 'p'.repeat(128) });
    for (let sent = 0; sent < 60_000; sent += 500) {
      const open = clients.filter((c) => !c.isClosed && c.socket.readyState === c.socket.OPEN);
      if (open.length === 0) break;
      for (const client of open) for (let i = 0; i < 500; i++) client.socket.send(ping);
      await tick();
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    await collectGarbage(gateway.inspectPort);
    const grown = rssBytesOf(gateway.service.proc.pid) - before;

    // About 4.5 MiB a client before (the 4 MiB uWS backpressure limit, and more); now their sockets are gone.
    expect(grown, `RSS grew ${(grown / MiB).toFixed(1)} MiB`).toBeLessThan(16 * MiB);
    for (const client of clients) client.setReading(true);
    await waitFor('every non-reading client dropped', () => clients.every((c) => c.isClosed), { timeoutMs: 15_000 });
    // Dropped without a close frame (it would only queue behind what they do not read).
    expect(await Promise.all(clients.map(async (c) => (await c.closed).code))).toEqual(clients.map(() => 1006));
  });

  it('keeps no bookkeeping per unsubscribe: 300,000 unsubscribes of distinct events on one open connection', async () => {
    const gateway = await startInspectedGateway();
    const client = await TestClient.authenticated(gateway.url, await directusLikeToken(SECRET));
    const batch = async (from: number, count: number) => {
      const seen = client.messages.length;
      for (let id = from; id < from + count; id++) client.socket.send(`{"type":"unsubscribe","event_id":${id}}`);
      await waitFor('replies', () => client.messages.length >= seen + count, { timeoutMs: 60_000, intervalMs: 5 });
      client.messages.length = 0;
    };
    await batch(1, 5_000);
    const before = await heapUsedAfterGc(gateway.inspectPort);
    for (let from = 10_000; from < 310_000; from += 5_000) await batch(from, 5_000);
    const after = await heapUsedAfterGc(gateway.inspectPort);
    expect(client.isClosed).toBe(false);
    // 13.8 MiB before (an entry per event id ever unsubscribed); now nothing is kept.
    expect(after - before, `heap grew ${((after - before) / MiB).toFixed(1)} MiB`).toBeLessThan(4 * MiB);
    await client.close();
  });
});
