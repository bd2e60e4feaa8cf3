import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import {
  createEventViewer,
  login,
  seedDirectus,
  setEventAccess,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
  startDirectus,
  type DirectusInstance,
  type Seeded,
} from '@pitwall/business-plane';
import { freePort, scrapeMetric, sharedRedisUrl, startService, uniqueName, waitFor, type ServiceProcess } from '@pitwall/testkit';
import { TestClient, type ServerMessage } from './support/client.js';
import { addPositions } from './support/stream.js';

// The built gateway (node dist/main.js) against a real Directus, real Redis and real clients.

const SHARDS = 2;
/** Device times of the test positions: inside the seeded events' windows (they run from an hour ago). */
const T0 = Date.now();

interface Gateway {
  service: ServiceProcess;
  url: string;
}

async function startGateway(env: Record<string, string>): Promise<Gateway> {
  const port = await freePort();
  const service = await startService('live-gateway', {
    REDIS_URL: sharedRedisUrl(),
    STREAM_SHARDS: String(SHARDS),
    INSTANCE_ID: uniqueName('pod'),
    GATEWAY_PORT: String(port),
    GATEWAY_BATCH_WINDOW_MS: '50',
    LOG_LEVEL: 'debug',
    ...env,
  });
  onTestFailed(() => {
    console.log(`live-gateway output (${env.STREAM_KEY}):\n${service.proc.output(200)}`);
  });
  return { service, url: `ws://127.0.0.1:${port}` };
}

function imeisOf(seed: Seeded, eventId: number): string[] {
  return seed.entries.filter((e) => e.event === eventId).map((e) => seed.devices.find((d) => d.id === e.device)?.imei ?? '');
}

function labelOf(seed: Seeded, imei: string): string | undefined {
  const device = seed.devices.find((d) => d.imei === imei);
  return seed.entries.find((e) => e.device === device?.id)?.label;
}

async function tokenOf(directusUrl: string, user: { email: string; password: string }): Promise<string> {
  return (await login(directusUrl, user.email, user.password)).accessToken;
}

async function subscribe(client: TestClient, eventId: number): Promise<ServerMessage> {
  return client.request({ type: 'subscribe', event_id: eventId });
}

describe('live gateway with the shared Directus', () => {
  const directusUrl = sharedDirectusUrl();
  const seed = sharedDirectusSeed();
  const redis = new Redis(sharedRedisUrl());
  const gateways: Gateway[] = [];
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.service.proc.stop()));
    redis.disconnect();
  });

  it('lets two users with different permissions each receive only their own event, snapshot first', async () => {
    const streamKey = uniqueName('e2e');
    const [one, two] = [imeisOf(seed, 1), imeisOf(seed, 2)];
    // Already in the stream before the gateway starts: the snapshot comes from the tail.
    await addPositions(redis, streamKey, SHARDS, [
      { deviceId: one[0]!, ts: T0 + 1_000 },
      { deviceId: two[0]!, ts: T0 + 1_000 },
    ]);
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directusUrl,
      DIRECTUS_SECRET: sharedDirectusSecret(),
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
    });
    gateways.push(gateway);

    const viewerOne = await TestClient.authenticated(gateway.url, await tokenOf(directusUrl, seed.users.viewerOne));
    const viewerAll = await TestClient.connect(gateway.url, await tokenOf(directusUrl, seed.users.viewerAll));
    await viewerAll.expect((m) => m.type === 'auth', 'auth ok from the query token');

    const subscribed = await subscribe(viewerOne, 1);
    expect(subscribed).toMatchObject({ type: 'subscribed', event_id: 1 });
    expect(subscribed.snapshot).toEqual([
      {
        device_id: one[0],
        label: labelOf(seed, one[0]!),
        ts: T0 + 1_000,
        lat: 54.6872,
        lon: 25.2797,
        alt: 100,
        speed: 50,
        heading: 90,
        sats: 9,
        rx: expect.any(Number) as number,
      },
    ]);
    expect(await subscribe(viewerOne, 2)).toMatchObject({ type: 'error', code: 'forbidden', event_id: 2 });
    const two$ = await subscribe(viewerAll, 2);
    expect(two$).toMatchObject({ type: 'subscribed', event_id: 2 });
    expect((two$.snapshot as { device_id: string }[]).map((p) => p.device_id)).toEqual([two[0]]);
    expect(await subscribe(viewerAll, 999_999)).toMatchObject({ type: 'error', event_id: 999_999 });

    const all = seed.devices.map((d) => d.imei);
    await addPositions(
      redis,
      streamKey,
      SHARDS,
      all.map((deviceId) => ({ deviceId, ts: T0 + 2_000 })),
    );
    await waitFor('viewer one has event 1', () => viewerOne.positions().length === one.length);
    await waitFor('viewer all has event 2', () => viewerAll.positions().length === two.length);
    // A third batch after which nothing else can still be on its way from the second one.
    await addPositions(
      redis,
      streamKey,
      SHARDS,
      all.map((deviceId) => ({ deviceId, ts: T0 + 3_000 })),
    );
    await waitFor('viewer one has event 1 again', () => viewerOne.positions().length === 2 * one.length);
    await waitFor('viewer all has event 2 again', () => viewerAll.positions().length === 2 * two.length);

    expect(new Set(viewerOne.positions().map((p) => p.device_id))).toEqual(new Set(one));
    expect(viewerOne.framesOf('positions').every((m) => m.event_id === 1)).toBe(true);
    expect(new Set(viewerAll.positions().map((p) => p.device_id))).toEqual(new Set(two));
    for (const p of [...viewerOne.positions(), ...viewerAll.positions()]) expect(p.label).toBe(labelOf(seed, p.device_id));
    expect(
      await scrapeMetric(gateway.service.metricsUrl, 'pitwall_live_gateway_authorization_calls_total', { result: 'forbidden' }),
    ).toBeGreaterThanOrEqual(1);
    await Promise.all([viewerOne.close(), viewerAll.close()]);
  });

  it('authorizes concurrent subscribes of an event the token lists without asking Directus, and never asks per position', async () => {
    const streamKey = uniqueName('e2e');
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directusUrl,
      DIRECTUS_SECRET: sharedDirectusSecret(),
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
    });
    gateways.push(gateway);
    const token = await tokenOf(directusUrl, seed.users.viewerAll);
    const clients = await Promise.all(Array.from({ length: 20 }, () => TestClient.authenticated(gateway.url, token)));
    const replies = await Promise.all(clients.map((c) => subscribe(c, 3)));
    expect(replies.every((r) => r.type === 'subscribed')).toBe(true);
    // The token's pitwall_events claim lists event 3 (issue 16): no authorization call at all (identical
    // concurrent calls that do go to Directus share one: queued-work.test.ts, the unit tests).
    const calls = () => scrapeMetric(gateway.service.metricsUrl, 'pitwall_live_gateway_authorization_calls_total').catch(() => 0);
    expect(await calls()).toBe(0);
    expect(await scrapeMetric(gateway.service.metricsUrl, 'pitwall_live_gateway_claim_authorizations_total', { result: 'allowed' })).toBe(
      20,
    );

    const devices = imeisOf(seed, 3);
    for (let round = 1; round <= 10; round++) {
      await addPositions(
        redis,
        streamKey,
        SHARDS,
        devices.map((deviceId) => ({ deviceId, ts: T0 + round })),
      );
    }
    await waitFor('every client has every position', () => clients.every((c) => c.positions(3).length === 10 * devices.length));
    expect(await calls()).toBe(0);
    expect(await scrapeMetric(gateway.service.metricsUrl, 'pitwall_live_gateway_entries_fetches_total')).toBe(1);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('ends a subscription Directus authorized with unsubscribed/forbidden at re-validation once the permission is revoked', async () => {
    const streamKey = uniqueName('e2e');
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directusUrl,
      DIRECTUS_SECRET: sharedDirectusSecret(),
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_REVALIDATE_INTERVAL_MS: '1000',
      GATEWAY_PERMISSION_CACHE_TTL_MS: '0',
    });
    gateways.push(gateway);
    const admin = sharedDirectusAdmin();
    // Event 1 granted after the login: the token's claim does not list it, so Directus authorizes the
    // subscription and it is re-validated periodically (claim-authorized ones end at a refresh: claim.e2e).
    const { user, policy } = await createEventViewer(admin, []);
    const userToken = await tokenOf(directusUrl, user);
    await setEventAccess(admin, policy, [1]);
    const revoked = await TestClient.authenticated(gateway.url, userToken);
    const witness = await TestClient.authenticated(gateway.url, await tokenOf(directusUrl, seed.users.viewerAll));
    expect(await subscribe(revoked, 1)).toMatchObject({ type: 'subscribed' });
    expect(await subscribe(witness, 1)).toMatchObject({ type: 'subscribed' });
    const devices = imeisOf(seed, 1);
    await addPositions(
      redis,
      streamKey,
      SHARDS,
      devices.map((deviceId) => ({ deviceId, ts: T0 + 1 })),
    );
    await waitFor(
      'both receive while allowed',
      () => revoked.positions().length === devices.length && witness.positions().length === devices.length,
    );

    await setEventAccess(admin, policy, []);
    const ended = await revoked.expect((m) => m.type === 'unsubscribed', 'unsubscribed at re-validation', 15_000);
    expect(ended).toEqual({ type: 'unsubscribed', event_id: 1, reason: 'forbidden' });
    await addPositions(
      redis,
      streamKey,
      SHARDS,
      devices.map((deviceId) => ({ deviceId, ts: T0 + 2 })),
    );
    await waitFor('the witness gets the next positions', () => witness.positions().length === 2 * devices.length);
    expect(await revoked.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(revoked.positions().length).toBe(devices.length);
    expect(await subscribe(revoked, 1)).toMatchObject({ type: 'error', code: 'forbidden' });
    await Promise.all([revoked.close(), witness.close()]);
  });

  it('runs as two instances (local and /users/me verification) that each deliver every position to their own clients; SIGTERM moves clients away with 1001', async () => {
    const streamKey = uniqueName('e2e');
    const common = { STREAM_KEY: streamKey, DIRECTUS_URL: directusUrl, DIRECTUS_SERVICE_TOKEN: seed.serviceToken };
    const local = await startGateway({ ...common, DIRECTUS_SECRET: sharedDirectusSecret() });
    const remote = await startGateway(common);
    gateways.push(local, remote);
    const token = await tokenOf(directusUrl, seed.users.viewerAll);
    const forged = await new SignJWT({ id: seed.users.viewerAll.id })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('directus')
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode('not-the-directus-secret'));
    const refused = await TestClient.connect(remote.url, forged);
    expect((await refused.closed).code).toBe(4401);

    const clients = await Promise.all([local, local, remote, remote].map((g) => TestClient.authenticated(g.url, token)));
    for (const client of clients) expect(await subscribe(client, 1)).toMatchObject({ type: 'subscribed' });
    const devices = imeisOf(seed, 1);
    const rounds = 5;
    for (let round = 1; round <= rounds; round++) {
      await addPositions(
        redis,
        streamKey,
        SHARDS,
        devices.map((deviceId) => ({ deviceId, ts: T0 + round })),
      );
    }
    for (const [i, client] of clients.entries()) {
      await waitFor(`client ${i} has every position`, () => client.positions(1).length === rounds * devices.length);
      for (const deviceId of devices) {
        expect(
          client
            .positions(1)
            .filter((p) => p.device_id === deviceId)
            .map((p) => p.ts - T0),
        ).toEqual([1, 2, 3, 4, 5]);
      }
    }

    const stopped = local.service.proc.stop('SIGTERM');
    expect((await clients[0]!.closed).code).toBe(1001);
    expect((await clients[1]!.closed).code).toBe(1001);
    expect((await stopped).code).toBe(0);
    await addPositions(
      redis,
      streamKey,
      SHARDS,
      devices.map((deviceId) => ({ deviceId, ts: T0 + 6 })),
    );
    await waitFor('the other pod keeps delivering', () => clients[2]!.positions(1).length === 6 * devices.length);
    await Promise.all(clients.map((c) => c.close()));
  });
});

describe('live gateway while Directus is down', () => {
  let directus: DirectusInstance;
  let seed: Seeded;
  beforeAll(async () => {
    // Without the events claim: every subscribe and re-validation here is Directus's to answer.
    directus = await startDirectus({ postgresAdminUrl: inject('postgresUrl'), eventsClaim: false });
    seed = await seedDirectus(directus);
  });
  afterAll(() => directus.destroy());

  it('follows changes to the entries of a watched event', async () => {
    const streamKey = uniqueName('e2e');
    const redis = new Redis(sharedRedisUrl());
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directus.url,
      DIRECTUS_SECRET: directus.secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_ENTRIES_REFRESH_INTERVAL_MS: '500',
    });
    const admin = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${directus.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${seed.adminToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(res.ok, await res.clone().text()).toBe(true);
      return res.status === 204 ? undefined : ((await res.json()) as { data: { id: number } }).data;
    };
    try {
      const client = await TestClient.authenticated(gateway.url, await tokenOf(directus.url, seed.users.viewerAll));
      expect(await subscribe(client, 3)).toMatchObject({ type: 'subscribed' });
      const guest = seed.devices.find((d) => d.imei === imeisOf(seed, 1)[0]);
      const regular = imeisOf(seed, 3)[0]!;
      const entry = await admin('POST', '/items/entries', { event: 3, device: guest?.id, label: 'guest car' });

      await waitFor('the guest device shows in event 3', async () => {
        await addPositions(redis, streamKey, SHARDS, [{ deviceId: guest!.imei, ts: Date.now() }]);
        return client.positions(3).some((p) => p.device_id === guest!.imei && p.label === 'guest car');
      });

      await admin('DELETE', `/items/entries/${entry?.id}`);
      await waitFor('the guest device no longer shows in event 3', async () => {
        const mark = Date.now();
        // Same pipeline, same read, same frame: a frame with the regular device tells whether the guest came along.
        await addPositions(redis, streamKey, SHARDS, [
          { deviceId: guest!.imei, ts: mark },
          { deviceId: regular, ts: mark },
        ]);
        await client.expect((m) => m.type === 'positions' && (m.positions as { ts: number }[]).some((p) => p.ts === mark), 'the frame');
        const frame = client.messages.find((m) => m.type === 'positions' && (m.positions as { ts: number }[]).some((p) => p.ts === mark));
        return !(frame?.positions as { device_id: string }[]).some((p) => p.device_id === guest!.imei);
      });
      await client.close();
    } finally {
      await gateway.service.proc.stop();
      redis.disconnect();
    }
  });

  it('keeps existing subscriptions receiving (also through failed re-validations) and answers a new subscribe with authorization_unavailable', async () => {
    const streamKey = uniqueName('e2e');
    const redis = new Redis(sharedRedisUrl());
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directus.url,
      DIRECTUS_SECRET: directus.secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_REVALIDATE_INTERVAL_MS: '1000',
      GATEWAY_PERMISSION_CACHE_TTL_MS: '0',
      GATEWAY_DIRECTUS_TIMEOUT_MS: '1000',
    });
    try {
      const client = await TestClient.authenticated(gateway.url, await tokenOf(directus.url, seed.users.viewerAll));
      expect(await subscribe(client, 1)).toMatchObject({ type: 'subscribed' });
      await directus.stop();

      await waitFor(
        'a re-validation that Directus could not answer',
        async () =>
          (await scrapeMetric(gateway.service.metricsUrl, 'pitwall_live_gateway_revalidations_total', { result: 'unavailable' })) > 0,
        { timeoutMs: 15_000 },
      );
      const devices = imeisOf(seed, 1);
      await addPositions(
        redis,
        streamKey,
        SHARDS,
        devices.map((deviceId) => ({ deviceId, ts: T0 + 1 })),
      );
      await waitFor('positions with Directus down', () => client.positions(1).length === devices.length);
      expect(await subscribe(client, 2)).toMatchObject({ type: 'error', code: 'authorization_unavailable', event_id: 2 });
      expect(client.framesOf('unsubscribed')).toEqual([]);

      await addPositions(
        redis,
        streamKey,
        SHARDS,
        devices.map((deviceId) => ({ deviceId, ts: T0 + 2 })),
      );
      await waitFor('still receiving', () => client.positions(1).length === 2 * devices.length);
      await client.close();
    } finally {
      await gateway.service.proc.stop();
      redis.disconnect();
    }
  });
});
