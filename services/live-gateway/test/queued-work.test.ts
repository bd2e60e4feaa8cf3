import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetricsRegistry } from '@pitwall/platform';
import type { Principal } from '../src/auth/token-verifier.js';
import { DirectusTokenVerifier } from '../src/auth/directus-token-verifier.js';
import { DirectusAuthorizer } from '../src/authz/directus-authorizer.js';
import { DirectusUnavailableError } from '../src/directus/directus-unavailable-error.js';
import { EventDirectory } from '../src/events/event-directory.js';
import { createGatewayMetrics } from '../src/metrics.js';
import type { Interest } from '../src/util/interest.js';
import { ConcurrencyLimiter } from '../src/util/limiter.js';
import { testDirectusClient } from './support/directus-client.js';

// Overload: Directus work queued behind the gateway's concurrency limit for connections that have
// closed is dropped, not run after they left. A stand-in Directus holds every answer until the test
// lets it go and counts the calls that reach it.

class HeldDirectus {
  readonly paths: string[] = [];
  private readonly held: ServerResponse[] = [];
  private readonly server = createServer((req: IncomingMessage, res: ServerResponse) => {
    this.paths.push(req.url ?? '');
    this.held.push(res);
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Answers every held call 200: a user for /users/me, one entry for /items/entries, an event otherwise. */
  releaseAll(): void {
    for (const res of this.held.splice(0)) {
      const entries = (res.req.url ?? '').startsWith('/items/entries');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          entries
            ? { data: [{ label: '1', device: { imei: '352093086403655' }, event: { starts_at: null, ends_at: null } }] }
            : { data: { id: 'u-1' } },
        ),
      );
    }
  }

  async stop(): Promise<void> {
    this.releaseAll();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A connection's interest, closed by the test. */
class Connection implements Interest {
  active = true;
}

function principal(n: number): Principal {
  return { userId: `u-${n}`, expiresAtMs: Date.now() + 60_000, sessionKey: `s:${n}`, eventsClaim: undefined };
}

async function waitUntil(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

let directus: HeldDirectus | undefined;
afterEach(async () => {
  await directus?.stop();
  directus = undefined;
});

describe('queued Directus work of closed connections', () => {
  it('the limiter refuses a waiting task whose interest is gone when its turn comes, and never runs it', async () => {
    const limiter = new ConcurrencyLimiter(1, 10, 60_000);
    let release = () => {};
    const first = limiter.run(
      () => new Promise<string>((resolve) => (release = () => resolve('first'))),
      (r) => new Error(r),
    );
    const gone = new Connection();
    let ran = false;
    const abandoned = limiter.run(
      () => {
        ran = true;
        return Promise.resolve('abandoned');
      },
      (r) => new Error(r),
      gone,
    );
    const wanted = limiter.run(
      () => Promise.resolve('wanted'),
      (r) => new Error(r),
      new Connection(),
    );
    gone.active = false;
    release();
    await expect(first).resolves.toBe('first');
    await expect(abandoned).rejects.toThrow('abandoned');
    await expect(wanted).resolves.toBe('wanted');
    expect(ran).toBe(false);
    expect(limiter.active).toBe(0);
    expect(limiter.queued).toBe(0);
  });

  it('authorizations queued for closed connections never reach Directus; a call shared with an open one does', async () => {
    directus = new HeldDirectus();
    const metrics = createGatewayMetrics(createMetricsRegistry());
    const client = testDirectusClient(await directus.start(), { concurrency: 1, timeoutMs: 5_000, metrics });
    const authorizer = new DirectusAuthorizer(client, metrics, 0);
    const connections = Array.from({ length: 6 }, () => new Connection());
    // Connection 0's call takes the only slot; 1..5 queue (4 and 5 share one call: same session, same event).
    const asks = connections.map((interest, n) =>
      authorizer.decide({ principal: principal(Math.min(n, 4)), token: `t${n}`, eventId: 1, fresh: false, interest }),
    );
    await waitUntil('the first call reaches Directus', () => directus?.paths.length === 1);
    for (const n of [1, 2, 3, 4]) (connections[n] as Connection).active = false;
    directus.releaseAll();
    await expect(asks[0]).resolves.toEqual({ result: 'allowed' });
    // 1..3 dropped; the call 4 and 5 share is still wanted by 5.
    for (const n of [1, 2, 3]) await expect(asks[n]).resolves.toMatchObject({ result: 'unavailable' });
    await waitUntil('the shared call reaches Directus', () => directus?.paths.length === 2);
    directus.releaseAll();
    await expect(asks[5]).resolves.toEqual({ result: 'allowed' });
    await expect(asks[4]).resolves.toEqual({ result: 'allowed' });
    expect(directus.paths).toHaveLength(2);
    const abandoned = await metrics.directusCalls.get();
    expect(abandoned.values.find((v) => v.labels.result === 'abandoned')?.value).toBe(3);
  });

  it('token checks (/users/me) queued for closed connections never reach Directus', async () => {
    directus = new HeldDirectus();
    const metrics = createGatewayMetrics(createMetricsRegistry());
    const client = testDirectusClient(await directus.start(), { concurrency: 1, timeoutMs: 5_000, metrics });
    const verifier = new DirectusTokenVerifier(client, metrics, { refusedTtlMs: 0 });
    const token = (n: number) =>
      new SignJWT({ id: 'u-1', n })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('directus')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode('not-the-secret-the-gateway-never-has-it'));
    const open = new Connection();
    const closed = new Connection();
    const first = verifier.verify(await token(1), open);
    const dropped = verifier.verify(await token(2), closed);
    await waitUntil('the first check reaches Directus', () => directus?.paths.length === 1);
    closed.active = false;
    directus.releaseAll();
    await expect(first).resolves.toMatchObject({ userId: 'u-1' });
    await expect(dropped).rejects.toBeInstanceOf(DirectusUnavailableError);
    expect(directus.paths).toHaveLength(1);
  });

  it('a refusal for lack of capacity carries a retry hint', async () => {
    directus = new HeldDirectus();
    const metrics = createGatewayMetrics(createMetricsRegistry());
    const client = testDirectusClient(await directus.start(), { concurrency: 1, timeoutMs: 5_000, metrics });
    const held = client.get('authorize', '/items/events/1', 't');
    const gone = new Connection();
    const queued = client.get('authorize', '/items/events/2', 't', gone);
    await waitUntil('the first call reaches Directus', () => directus?.paths.length === 1);
    gone.active = false;
    directus.releaseAll();
    await held;
    const err: unknown = await queued.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DirectusUnavailableError);
    expect((err as DirectusUnavailableError).retryAfterMs).toBeGreaterThan(0);
  });
});

describe('event entries at a race start', () => {
  it('reads a watched event once per pod however late its subscribers come; only the periodic refresh re-reads it', async () => {
    directus = new HeldDirectus();
    const metrics = createGatewayMetrics(createMetricsRegistry());
    const client = testDirectusClient(await directus.start(), { concurrency: 4, timeoutMs: 5_000, metrics });
    let now = 0;
    const directory = new EventDirectory(client, 'service-token', metrics, 30_000, 0, () => now);
    const first = directory.load(7);
    await waitUntil('the entries read reaches Directus', () => directus?.paths.length === 1);
    directus.releaseAll();
    directory.setWatched(7, true, await first);
    // Long past the refresh interval: subscribers of a watched event use what the refresh keeps current.
    now = 120_000;
    await directory.load(7);
    expect(directus.paths).toHaveLength(1);
    const refreshed = directory.refresh();
    await waitUntil('the refresh reaches Directus', () => directus?.paths.length === 2);
    directus.releaseAll();
    await refreshed;
    const calls = await metrics.directusCalls.get();
    expect(calls.values.filter((v) => v.labels.result === '200').map((v) => v.labels.call)).toEqual(['entries', 'entries_refresh']);
  });
});
