import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { decodeJwt, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import {
  createEventViewer,
  DirectusCallCounter,
  DirectusRest,
  login,
  seedDirectus,
  setEventAccess,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
  startDirectus,
  type Seeded,
  type StartedDirectus,
} from '@pitwall/business-plane';
import { freePort, scrapeMetric, sharedRedisUrl, startService, uniqueName, waitFor, type ServiceProcess } from '@pitwall/testkit';
import { TestClient, type ServerMessage } from './support/client.js';
import { addPositions } from './support/stream.js';

// The gateway as a hostile client and an unhappy Directus would treat it: the built service against a
// real Directus (and its own rate limiter for real 429s), real Redis and real clients.

const SHARDS = 2;

interface Gateway {
  service: ServiceProcess;
  url: string;
}

const gateways: Gateway[] = [];
afterAll(async () => {
  await Promise.all(gateways.map((g) => g.service.proc.stop()));
});

async function startGateway(env: Record<string, string>): Promise<Gateway> {
  const port = await freePort();
  const service = await startService('live-gateway', {
    REDIS_URL: sharedRedisUrl(),
    STREAM_SHARDS: String(SHARDS),
    STREAM_KEY: uniqueName('hostile'),
    INSTANCE_ID: uniqueName('pod'),
    GATEWAY_PORT: String(port),
    GATEWAY_BATCH_WINDOW_MS: '50',
    LOG_LEVEL: 'debug',
    ...env,
  });
  onTestFailed(() => console.log(`live-gateway output:\n${service.proc.output(120)}`));
  const gateway = { service, url: `ws://127.0.0.1:${port}` };
  gateways.push(gateway);
  return gateway;
}

/** A token that looks like Directus's (HS256, issuer directus, not expired) but is signed with another key. */
function fakeToken(n: number): Promise<string> {
  return new SignJWT({ id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`, role: null, app_access: false, admin_access: false })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('directus')
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(`not-the-directus-secret-${n}`));
}

/** A user's real access token re-signed with another expiry (Directus accepts it: same secret, same session). */
async function withExpiry(secret: string, token: string, expiresAtS: number): Promise<string> {
  const { exp: _exp, iat: _iat, ...claims } = decodeJwt(token);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(expiresAtS)
    .sign(new TextEncoder().encode(secret));
}

/** Logs in in Directus's session mode; returns the session token (a JWT with a `session` claim). */
async function sessionLogin(directusUrl: string, user: { email: string; password: string }): Promise<string> {
  const res = await fetch(`${directusUrl}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: user.email, password: user.password, mode: 'session' }),
  });
  await res.body?.cancel();
  const token = /directus_session_token=([^;]+)/.exec(res.headers.getSetCookie().join(';'))?.[1];
  if (res.status !== 200 || token === undefined) throw new Error(`session login failed: HTTP ${res.status}`);
  return token;
}

function imeisOf(seed: Seeded, eventId: number): string[] {
  return seed.entries.filter((e) => e.event === eventId).map((e) => seed.devices.find((d) => d.id === e.device)?.imei ?? '');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('live gateway against the shared Directus, with hostile clients', () => {
  const directusUrl = sharedDirectusUrl();
  const seed = sharedDirectusSeed();
  const secret = sharedDirectusSecret();
  const redis = new Redis(sharedRedisUrl());
  afterAll(() => redis.disconnect());

  it('verifies (without the secret) one token of a connection at a time, every /users/me through the limiter, and a refused token once', async () => {
    const counter = await DirectusCallCounter.start(directusUrl);
    try {
      const gateway = await startGateway({
        DIRECTUS_URL: counter.url,
        DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
        GATEWAY_DIRECTUS_CONCURRENCY: '4',
      });
      // 5 sockets, 400 distinct forged tokens each, all sent at once.
      const clients = await Promise.all(Array.from({ length: 5 }, () => TestClient.connect(gateway.url)));
      const tokens = await Promise.all(Array.from({ length: 400 }, (_, i) => fakeToken(i)));
      for (const client of clients) for (const token of tokens) client.send({ type: 'auth', access_token: token });
      const codes = await Promise.all(clients.map(async (c) => (await c.closed).code));
      for (const code of codes) expect([4400, 4401]).toContain(code);
      await sleep(500);
      expect(counter.snapshot().verify).toBeLessThanOrEqual(5);
      expect(counter.maxInFlight).toBeLessThanOrEqual(4);

      // The same refused token from 20 new connections: Directus is asked at most once more.
      const before = counter.snapshot().verify;
      const again = await Promise.all(Array.from({ length: 20 }, () => TestClient.connect(gateway.url)));
      for (const client of again) client.send({ type: 'auth', access_token: tokens[0] });
      for (const client of again) expect((await client.closed).code).toBe(4401);
      expect(counter.snapshot().verify - before).toBeLessThanOrEqual(1);

      // A real token still goes through.
      const viewer = await TestClient.authenticated(
        gateway.url,
        (await login(directusUrl, seed.users.viewerAll.email, seed.users.viewerAll.password)).accessToken,
      );
      await viewer.close();
    } finally {
      await counter.stop();
    }
  });

  it('shows a tracker entered in two events only in the event whose time its position is, snapshots included', async () => {
    const admin = new DirectusRest(directusUrl, seed.adminToken);
    const now = Date.now();
    const day = 86_400_000;
    const iso = (ms: number) => new Date(ms).toISOString();
    const stamp = uniqueName('ev');
    // Yesterday's event and today's; the tracker is reused, as trackers are.
    const yesterday = await admin.post<{ id: number }>('/items/events', {
      name: `yesterday ${stamp}`,
      status: 'finished',
      starts_at: iso(now - day - 3_600_000),
      ends_at: iso(now - day + 3_600_000),
    });
    const today = await admin.post<{ id: number }>('/items/events', {
      name: `today ${stamp}`,
      status: 'live',
      starts_at: iso(now - 3_600_000),
      ends_at: iso(now + 3_600_000),
    });
    const imei = (n: number) => String(990_000_000_000_000 + Math.floor(Math.random() * 9_000_000_000) * 10 + n);
    const [tracker, onlyYesterday, onlyToday] = await admin.post<{ id: number; imei: string }[]>('/items/devices', [
      { imei: imei(1), name: 'reused tracker' },
      { imei: imei(2), name: 'yesterday only' },
      { imei: imei(3), name: 'today only' },
    ]);
    if (tracker === undefined || onlyYesterday === undefined || onlyToday === undefined) throw new Error('devices not created');
    await admin.post('/items/entries', [
      { event: yesterday.id, device: tracker.id, label: 'yesterday #9' },
      { event: yesterday.id, device: onlyYesterday.id, label: 'yesterday #1' },
      { event: today.id, device: tracker.id, label: 'today #9' },
      { event: today.id, device: onlyToday.id, label: 'today #1' },
    ]);

    const streamKey = uniqueName('windows');
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directusUrl,
      DIRECTUS_SECRET: secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_EVENT_WINDOW_MARGIN_MS: '600000',
    });
    const token = (await login(directusUrl, seed.users.viewerAll.email, seed.users.viewerAll.password)).accessToken;
    const viewer = await TestClient.authenticated(gateway.url, token);
    expect(await viewer.request({ type: 'subscribe', event_id: yesterday.id })).toMatchObject({ type: 'subscribed' });
    expect(await viewer.request({ type: 'subscribe', event_id: today.id })).toMatchObject({ type: 'subscribed' });

    const yesterdayTs = now - day;
    await addPositions(redis, streamKey, SHARDS, [
      { deviceId: tracker.imei, ts: yesterdayTs },
      { deviceId: onlyYesterday.imei, ts: yesterdayTs },
      { deviceId: tracker.imei, ts: now },
      { deviceId: onlyToday.imei, ts: now },
    ]);
    // Markers after them: once both arrived, everything before them did.
    await addPositions(redis, streamKey, SHARDS, [
      { deviceId: onlyYesterday.imei, ts: yesterdayTs + 1 },
      { deviceId: onlyToday.imei, ts: now + 1 },
    ]);
    await waitFor(
      'both markers',
      () =>
        viewer.positions(yesterday.id).some((p) => p.ts === yesterdayTs + 1) && viewer.positions(today.id).some((p) => p.ts === now + 1),
    );
    // (Sorted: positions of devices on different shards may come in either order.)
    const seen = (eventId: number) =>
      viewer
        .positions(eventId)
        .map((p) => `${p.label} @ ${p.ts}`)
        .sort();
    expect(seen(yesterday.id)).toEqual([
      `yesterday #1 @ ${yesterdayTs}`,
      `yesterday #1 @ ${yesterdayTs + 1}`,
      `yesterday #9 @ ${yesterdayTs}`,
    ]);
    expect(seen(today.id)).toEqual([`today #1 @ ${now}`, `today #1 @ ${now + 1}`, `today #9 @ ${now}`]);

    // A newcomer's snapshot of yesterday: the tracker's latest position is today's, so it is not in it.
    const newcomer = await TestClient.authenticated(gateway.url, token);
    const snapshot = await newcomer.request({ type: 'subscribe', event_id: yesterday.id });
    expect((snapshot.snapshot as { label: string; ts: number }[]).map((p) => [p.label, p.ts])).toEqual([['yesterday #1', yesterdayTs + 1]]);
    await Promise.all([viewer.close(), newcomer.close()]);
  });

  it('stops delivery the moment a token expires; the grace period only delays the close, a fresh token resumes', async () => {
    const streamKey = uniqueName('expiry');
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directusUrl,
      DIRECTUS_SECRET: secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_TOKEN_EXPIRY_GRACE_MS: '4000',
    });
    const real = (await login(directusUrl, seed.users.viewerAll.email, seed.users.viewerAll.password)).accessToken;
    const expiresAtS = Math.floor(Date.now() / 1000) + 4;
    const client = await TestClient.authenticated(gateway.url, await withExpiry(secret, real, expiresAtS));
    expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'subscribed' });
    const devices = imeisOf(seed, 1);

    // Positions every 100 ms until the end of the test.
    let ts = Date.now();
    let producing = true;
    const producer = (async () => {
      while (producing) {
        ts += 100;
        await addPositions(
          redis,
          streamKey,
          SHARDS,
          devices.map((deviceId) => ({ deviceId, ts })),
        );
        await sleep(100);
      }
    })();
    try {
      const expired = await client.expect((m) => m.type === 'error' && m.code === 'token_expired', 'token_expired', 15_000);
      const at = client.messages.indexOf(expired);
      expect(client.positions(1).length).toBeGreaterThan(0);
      await sleep(2_000);
      // Nothing after token_expired during the grace period.
      expect(client.messages.slice(at + 1).filter((m: ServerMessage) => m.type === 'positions')).toEqual([]);

      const renewed = await client.request({
        type: 'auth',
        access_token: await withExpiry(secret, real, Math.floor(Date.now() / 1000) + 600),
      });
      expect(renewed).toMatchObject({ type: 'auth', status: 'ok' });
      const resumedFrom = client.messages.length;
      await waitFor('positions again', () => client.messages.slice(resumedFrom).filter((m) => m.type === 'positions').length >= 3);
      await sleep(5_000);
      expect(client.isClosed).toBe(false);
    } finally {
      producing = false;
      await producer;
    }
    await client.close();
  });

  it('never lets one login session of a user ride on what another session was told: a logged-out session is refused', async () => {
    const gateway = await startGateway({
      DIRECTUS_URL: directusUrl,
      DIRECTUS_SECRET: secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_PERMISSION_CACHE_TTL_MS: '600000',
    });
    // A viewer granted event 2 after logging in: its tokens' pitwall_events claim does not list it, so
    // Directus is asked. (A claim-listed event stays allowed for a logged-out session's token until its
    // exp, as the token itself stays valid: the token's lifetime bounds it.)
    const admin = sharedDirectusAdmin();
    const { user, policy } = await createEventViewer(admin, []);
    // Session-mode logins: their tokens carry a `session` claim, and Directus refuses them once it ends.
    const [first, second] = [await sessionLogin(directusUrl, user), await sessionLogin(directusUrl, user)];
    await setEventAccess(admin, policy, [2]);
    const live = await TestClient.authenticated(gateway.url, second);
    expect(await live.request({ type: 'subscribe', event_id: 2 })).toMatchObject({ type: 'subscribed' });

    // The first session logs out; its token is within its lifetime (and still verifies with the secret).
    const logout = await fetch(`${directusUrl}/auth/logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: `directus_session_token=${first}` },
      body: JSON.stringify({ mode: 'session' }),
    });
    expect(logout.status).toBe(204);
    const loggedOut = await TestClient.authenticated(gateway.url, first);
    expect(await loggedOut.request({ type: 'subscribe', event_id: 2 })).toMatchObject({ type: 'error', code: 'forbidden', event_id: 2 });
    // The live session is not affected.
    expect(await live.request({ type: 'subscribe', event_id: 2 })).toMatchObject({ type: 'subscribed' });
    await Promise.all([live.close(), loggedOut.close()]);
  });
});

describe('live gateway while Directus rate-limits it (real 429s)', () => {
  const DURATION_S = 2;
  let directus: StartedDirectus;
  let seed: Seeded;
  let dataDir: string;
  const redis = new Redis(sharedRedisUrl());

  beforeAll(async () => {
    // Seeded with the limiter off (seeding makes many calls), then restarted on the same database with it on.
    dataDir = mkdtempSync(join(tmpdir(), 'pitwall-directus-limited-'));
    const postgresAdminUrl = inject('postgresUrl');
    // Both without the events claim (an extension installed into the shared data directory would load in
    // the second too): tokens without it, so every subscribe and re-validation here goes to Directus.
    const seeding = await startDirectus({ postgresAdminUrl, dataDir, eventsClaim: false });
    seed = await seedDirectus(seeding);
    await seeding.stop();
    directus = await startDirectus({
      postgresAdminUrl,
      dataDir,
      database: seeding.database,
      secret: seeding.secret,
      eventsClaim: false,
      env: {
        RATE_LIMITER_ENABLED: 'true',
        RATE_LIMITER_STORE: 'memory',
        RATE_LIMITER_POINTS: '40',
        RATE_LIMITER_DURATION: String(DURATION_S),
      },
    });
  });
  afterAll(async () => {
    redis.disconnect();
    await directus.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Spends the rest of this address's rate-limit window: Directus answers 429 until it ends. */
  async function tripLimiter(): Promise<void> {
    for (let round = 0; round < 20; round++) {
      const statuses = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const res = await fetch(`${directus.url}/server/ping`);
          await res.body?.cancel();
          return res.status;
        }),
      );
      if (statuses.includes(429)) return;
    }
    throw new Error('Directus never answered 429: is its rate limiter on?');
  }

  /** Keeps Directus answering 429 until stopped. */
  function keepLimited(): () => Promise<void> {
    let running = true;
    const loop = (async () => {
      while (running) {
        await tripLimiter();
        await sleep(50);
      }
    })();
    return async () => {
      running = false;
      await loop;
    };
  }

  async function viewerToken(): Promise<string> {
    await sleep(DURATION_S * 1000);
    return (await login(directus.url, seed.users.viewerAll.email, seed.users.viewerAll.password)).accessToken;
  }

  it('answers a subscribe during 429s with authorization_unavailable (never forbidden, never cached), and subscribes once the limit lifts', async () => {
    const gateway = await startGateway({
      DIRECTUS_URL: directus.url,
      DIRECTUS_SECRET: directus.secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_PERMISSION_CACHE_TTL_MS: '600000',
    });
    const client = await TestClient.authenticated(gateway.url, await viewerToken());
    let reply: ServerMessage | undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      await tripLimiter();
      reply = await client.request({ type: 'subscribe', event_id: 1 });
      expect(reply.code).not.toBe('forbidden');
      if (reply.type === 'error') break;
      // The window ended between the trip and the call: try again.
      await client.request({ type: 'unsubscribe', event_id: 1 });
    }
    expect(reply).toMatchObject({ type: 'error', code: 'authorization_unavailable', event_id: 1 });
    expect(typeof reply?.retry_after_ms).toBe('number');
    await sleep(DURATION_S * 1000 + 200);
    expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'subscribed' });
    await client.close();
  });

  it('keeps live subscriptions through re-validations Directus answers with 429', async () => {
    const streamKey = uniqueName('limited');
    const gateway = await startGateway({
      STREAM_KEY: streamKey,
      DIRECTUS_URL: directus.url,
      DIRECTUS_SECRET: directus.secret,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      GATEWAY_PERMISSION_CACHE_TTL_MS: '0',
      GATEWAY_REVALIDATE_INTERVAL_MS: '500',
    });
    const client = await TestClient.authenticated(gateway.url, await viewerToken());
    expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'subscribed' });
    const revalidations = (labels: Record<string, string> = {}) =>
      scrapeMetric(gateway.service.metricsUrl, 'pitwall_live_gateway_revalidations_total', labels).catch(() => 0);
    const before = await revalidations();
    const stop = keepLimited();
    try {
      await waitFor('re-validations while Directus answers 429', async () => (await revalidations()) - before >= 3, { timeoutMs: 20_000 });
    } finally {
      await stop();
    }
    expect(await revalidations({ result: 'unavailable' })).toBeGreaterThan(0);
    expect(await revalidations({ result: 'forbidden' })).toBe(0);
    expect(client.framesOf('unsubscribed')).toEqual([]);
    const devices = imeisOf(seed, 1);
    await addPositions(
      redis,
      streamKey,
      SHARDS,
      devices.map((deviceId) => ({ deviceId, ts: Date.now() })),
    );
    await waitFor('still receiving', () => client.positions(1).length === devices.length);
    await client.close();
  });

  it('verifying by /users/me during 429s: authorization_unavailable and the socket stays open, never 4401', async () => {
    const gateway = await startGateway({ DIRECTUS_URL: directus.url, DIRECTUS_SERVICE_TOKEN: seed.serviceToken });
    const token = await viewerToken();
    let client: TestClient | undefined;
    let reply: ServerMessage | undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      client = await TestClient.connect(gateway.url);
      await tripLimiter();
      reply = await client.request({ type: 'auth', access_token: token });
      if (reply.type === 'error') break;
      // The window ended between the trip and the call: again, on a new connection.
      await client.close();
    }
    if (client === undefined) throw new Error('no attempt made');
    expect(reply).toMatchObject({ type: 'error', code: 'authorization_unavailable' });
    expect(client.isClosed).toBe(false);
    await sleep(DURATION_S * 1000 + 200);
    expect(await client.request({ type: 'auth', access_token: token })).toMatchObject({ type: 'auth', status: 'ok' });
    await client.close();
  });
});
