import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { base64url } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, scrapeMetric, sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { PROTOCOL_LIMITS } from '@pitwall/live-protocol';
import { TestClient } from './support/client.js';
import { startGatewayInProcess, type RunningGateway } from './support/gateway.js';
import { directusLikeToken } from './support/tokens.js';

// The WebSocket edge with real sockets and real Redis. Directus is deliberately unreachable here
// (nothing listens on DIRECTUS_URL): authentication is local (DIRECTUS_SECRET), and authorization
// must report `authorization_unavailable`. Flows with a real Directus are in *.e2e.test.ts.
const SECRET = 'gateway-int-secret-of-at-least-32-bytes';

describe('live gateway protocol (no Directus reachable)', () => {
  let running: RunningGateway;

  beforeAll(async () => {
    running = await startGatewayInProcess({
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('gw'),
      INSTANCE_ID: uniqueName('pod'),
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SECRET: SECRET,
      DIRECTUS_SERVICE_TOKEN: 'unused',
      GATEWAY_AUTH_TIMEOUT_MS: '400',
      GATEWAY_TOKEN_EXPIRY_GRACE_MS: '300',
      GATEWAY_MAX_PROTOCOL_ERRORS: '3',
      GATEWAY_SUBSCRIBE_RATE_PER_SECOND: '2',
      GATEWAY_MAX_CONNECTIONS: '50',
      GATEWAY_DIRECTUS_TIMEOUT_MS: '500',
    });
  });
  afterAll(() => running.stop());

  it('authenticates with the access_token query parameter, verified before the upgrade', async () => {
    const token = await directusLikeToken(SECRET);
    const client = await TestClient.connect(running.url, token);
    const ok = await client.expect((m) => m.type === 'auth', 'auth ok');
    expect(ok).toMatchObject({ status: 'ok' });
    expect(typeof ok.expires_at).toBe('number');
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    await client.close();
  });

  it('handles requests sent right after opening with a query token only once the token is verified, in order', async () => {
    const token = await directusLikeToken(SECRET);
    const client = new TestClient(new WebSocket(`${running.url}/live?access_token=${encodeURIComponent(token)}`));
    client.socket.once('open', () => {
      client.send({ type: 'subscribe', event_id: 5, uid: 's1' });
      client.send({ type: 'unsubscribe', event_id: 5, uid: 'u1' });
    });
    const reply = await client.expect((m) => m.uid === 's1', 'subscribe reply');
    // Directus is unreachable here: the subscribe was authenticated, then could not be authorized.
    expect(reply).toMatchObject({ type: 'error', code: 'authorization_unavailable' });
    expect(await client.expect((m) => m.uid === 'u1', 'unsubscribe reply')).toMatchObject({ type: 'unsubscribed', reason: 'client' });
    expect(client.messages.map((m) => m.type)).toEqual(['auth', 'unsubscribed', 'error']);
    await client.close();
  });

  it('authenticates with a first auth message and echoes its uid', async () => {
    const client = await TestClient.connect(running.url);
    const expiresAtS = Math.floor(Date.now() / 1000) + 600;
    client.send({ type: 'auth', access_token: await directusLikeToken(SECRET, { expiresAtS }), uid: 'a1' });
    expect(await client.expect((m) => m.uid === 'a1', 'auth reply')).toEqual({
      type: 'auth',
      status: 'ok',
      expires_at: expiresAtS * 1000,
      uid: 'a1',
    });
    await client.close();
  });

  it('closes with 4408 when no token arrives in time', async () => {
    const client = await TestClient.connect(running.url);
    expect((await client.closed).code).toBe(4408);
    expect(client.messages).toContainEqual(expect.objectContaining({ type: 'error', code: 'unauthenticated' }));
  });

  const now = () => Math.floor(Date.now() / 1000);
  const badTokens: [string, () => Promise<string>, string][] = [
    ['forged (another secret)', () => directusLikeToken('not-the-secret'), 'unauthenticated'],
    ['expired', () => directusLikeToken(SECRET, { expiresAtS: now() - 10 }), 'token_expired'],
    [
      'alg none',
      () => {
        const enc = (v: unknown) => base64url.encode(JSON.stringify(v));
        return Promise.resolve(`${enc({ alg: 'none', typ: 'JWT' })}.${enc({ id: 'u', iss: 'directus', exp: now() + 600 })}.`);
      },
      'unauthenticated',
    ],
    ['of another algorithm (HS384)', () => directusLikeToken(SECRET, { alg: 'HS384' }), 'unauthenticated'],
    ['of a wrong issuer', () => directusLikeToken(SECRET, { issuer: 'evil' }), 'unauthenticated'],
  ];

  it.each(badTokens)('refuses a %s token in an auth message with 4401', async (_what, make, code) => {
    const client = await TestClient.connect(running.url);
    client.send({ type: 'auth', access_token: await make(), uid: 'bad' });
    expect((await client.closed).code).toBe(4401);
    expect(client.messages).toContainEqual(expect.objectContaining({ type: 'error', code, uid: 'bad' }));
    expect(client.messages.some((m) => m.type === 'auth')).toBe(false);
  });

  it.each(badTokens)('refuses a %s token in the query parameter with 4401', async (_what, make) => {
    const client = await TestClient.connect(running.url, await make());
    expect((await client.closed).code).toBe(4401);
  });

  it('keeps a connection alive past its first token expiry when the token is refreshed; without refresh: token_expired, then 4401', async () => {
    const shortLived = now() + 2;
    const refreshed = await TestClient.authenticated(running.url, await directusLikeToken(SECRET, { expiresAtS: shortLived }));
    const lapsed = await TestClient.authenticated(running.url, await directusLikeToken(SECRET, { expiresAtS: shortLived }));
    const renewal = await refreshed.request({ type: 'auth', access_token: await directusLikeToken(SECRET, { expiresAtS: now() + 600 }) });
    expect(renewal).toMatchObject({ type: 'auth', status: 'ok' });

    expect((await lapsed.closed).code).toBe(4401);
    expect(lapsed.messages).toContainEqual(expect.objectContaining({ type: 'error', code: 'token_expired' }));
    // The lapsed one is gone after expiry plus grace; the refreshed one still answers.
    expect(Date.now()).toBeGreaterThan(shortLived * 1000);
    expect(await refreshed.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(refreshed.messages.some((m) => m.type === 'error')).toBe(false);
    await refreshed.close();
  });

  it('refuses a refresh with a token of another user', async () => {
    const client = await TestClient.authenticated(running.url, await directusLikeToken(SECRET, { userId: 'user-a' }));
    client.send({ type: 'auth', access_token: await directusLikeToken(SECRET, { userId: 'user-b' }) });
    expect((await client.closed).code).toBe(4401);
  });

  it('answers malformed JSON and unknown types with bad_request, then 4400 after too many; the gateway keeps serving', async () => {
    const client = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    client.sendRaw('{"type":');
    await client.expect((m) => m.type === 'error' && m.code === 'bad_request', 'bad_request for bad JSON');
    expect(await client.request({ type: 'launch' })).toMatchObject({ type: 'error', code: 'bad_request' });
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    client.send({ type: 'subscribe', event_id: 'one' });
    expect((await client.closed).code).toBe(4400);

    const other = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    expect(await other.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    await other.close();
    expect(
      await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_messages_rejected_total', { reason: 'bad_request' }),
    ).toBeGreaterThanOrEqual(3);
  });

  it('drops a frame over the protocol limit (4096 bytes) before reading it, and closes a binary frame with 4400', async () => {
    const big = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    // uWS refuses it itself (its maxPayloadLength is the protocol's limit): no reply, the socket is dropped.
    big.send({ type: 'ping', pad: 'x'.repeat(PROTOCOL_LIMITS.maxMessageBytes) });
    expect((await big.closed).code).toBe(1006);
    expect(big.messages.some((m) => m.type === 'pong')).toBe(false);

    const atLimit = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    const pad = 'x'.repeat(PROTOCOL_LIMITS.maxMessageBytes - JSON.stringify({ type: 'ping', uid: 'p', pad: '' }).length);
    atLimit.send({ type: 'ping', uid: 'p', pad });
    expect(await atLimit.expect((m) => m.uid === 'p', 'pong at the limit')).toMatchObject({ type: 'pong' });
    await atLimit.close();
    expect(await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_connections_closed_total', { reason: 'oversized' })).toBe(1);

    const binary = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    binary.sendRaw(Buffer.from([1, 2, 3]), true);
    expect((await binary.closed).code).toBe(4400);
  });

  it('answers a ping before authentication with unauthenticated, not pong', async () => {
    const client = await TestClient.connect(running.url);
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'error', code: 'unauthenticated' });
    await client.close();
  });

  it('verifies one auth message of a connection at a time: a burst of forged tokens costs one verification', async () => {
    const before = await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_authentications_total');
    const client = await TestClient.connect(running.url);
    const forged = await Promise.all(Array.from({ length: 50 }, (_, i) => directusLikeToken('not-the-secret', { userId: `u${i}` })));
    for (const token of forged) client.send({ type: 'auth', access_token: token });
    // Refused (4401), or over the budget of messages before authentication (4400), whichever comes first.
    expect([4400, 4401]).toContain((await client.closed).code);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_authentications_total')) - before).toBe(1);
  });

  it('refuses subscribe before authentication', async () => {
    const client = await TestClient.connect(running.url);
    expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'error', code: 'unauthenticated' });
    await client.close();
  });

  it('answers subscribe with authorization_unavailable when Directus cannot be reached, and rate-limits subscribes', async () => {
    const client = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    expect(await client.request({ type: 'subscribe', event_id: 7 })).toMatchObject({
      type: 'error',
      code: 'authorization_unavailable',
      event_id: 7,
    });
    const replies = await Promise.all(Array.from({ length: 8 }, () => client.request({ type: 'subscribe', event_id: 7 })));
    expect(replies.some((r) => r.code === 'rate_limited')).toBe(true);
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    await client.close();
    expect(
      await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_authorization_calls_total', { result: 'unavailable' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('answers unsubscribe of an event it does not have with unsubscribed (idempotent)', async () => {
    const client = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    expect(await client.request({ type: 'unsubscribe', event_id: 3 })).toMatchObject({
      type: 'unsubscribed',
      event_id: 3,
      reason: 'client',
    });
    await client.close();
  });

  it('refuses connections beyond GATEWAY_MAX_CONNECTIONS with HTTP 503 once every one is authenticated', async () => {
    const token = await directusLikeToken(SECRET);
    const clients = await Promise.all(
      Array.from({ length: 50 - running.gateway.server.connectionCount }, () => TestClient.authenticated(running.url, token)),
    );
    await expect(TestClient.connect(running.url)).rejects.toThrow(/503/);
    await Promise.all(clients.map((c) => c.close()));
    expect(await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_connections_opened_total', { result: 'rejected_full' })).toBe(1);
  });
});

describe('live gateway drain', () => {
  it('fails readiness and refuses new connections once draining, while open ones keep being served until closed with 1001', async () => {
    const running = await startGatewayInProcess({
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('gw'),
      INSTANCE_ID: uniqueName('pod'),
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SECRET: SECRET,
      DIRECTUS_SERVICE_TOKEN: 'unused',
    });
    try {
      expect((await fetch(`${running.metricsUrl}/readyz`)).status).toBe(200);
      const open = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
      running.gateway.beginDrain();
      expect((await fetch(`${running.metricsUrl}/readyz`)).status).toBe(503);
      await expect(TestClient.connect(running.url)).rejects.toThrow();
      expect(await open.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
      await running.gateway.server.close();
      expect((await open.closed).code).toBe(1001);
    } finally {
      await running.stop();
    }
  });
});

describe('live gateway admission', () => {
  let running: RunningGateway;
  const ORIGIN = 'https://map.pitwall.example';

  beforeAll(async () => {
    running = await startGatewayInProcess({
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('gw'),
      INSTANCE_ID: uniqueName('pod'),
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SECRET: SECRET,
      DIRECTUS_SERVICE_TOKEN: 'unused',
      GATEWAY_MAX_CONNECTIONS: '30',
      GATEWAY_MAX_UNAUTHENTICATED_CONNECTIONS: '10',
      GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: '12',
      GATEWAY_AUTH_TIMEOUT_MS: '60000',
      GATEWAY_ALLOWED_ORIGINS: ORIGIN,
    });
  });
  afterAll(() => running.stop());

  /** Opens connections from one loopback address until the gateway refuses one; returns them and the refusal. */
  async function fill(address: string, max: number): Promise<{ clients: TestClient[]; refusal: string | undefined }> {
    const clients: TestClient[] = [];
    for (let i = 0; i < max; i++) {
      try {
        clients.push(await TestClient.connect(running.url, undefined, { localAddress: address }));
      } catch (err) {
        return { clients, refusal: (err as Error).message };
      }
    }
    return { clients, refusal: undefined };
  }

  it('lets no socket that never authenticates keep a viewer out: the oldest of them makes room', async () => {
    const idle = [...(await fill('127.0.0.2', 12)).clients, ...(await fill('127.0.0.6', 12)).clients];
    expect(idle).toHaveLength(24);
    // At most 10 wait for authentication at once: the 14 oldest were closed to make room.
    await waitFor('the oldest are crowded out', () => idle.filter((c) => c.isClosed).length === 14);
    for (const client of idle.slice(0, 14)) expect((await client.closed).code).toBe(4408);
    const viewer = await TestClient.authenticated(running.url, await directusLikeToken(SECRET), { localAddress: '127.0.0.3' });
    expect(await viewer.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(idle.filter((c) => c.isClosed)).toHaveLength(15);
    await Promise.all([...idle, viewer].map((c) => c.close()));
    expect(await scrapeMetric(running.metricsUrl, 'pitwall_live_gateway_connections_closed_total', { reason: 'crowded_out' })).toBe(15);
  });

  it('caps the connections of one address (HTTP 429), others still connect', async () => {
    const token = await directusLikeToken(SECRET);
    const mine: TestClient[] = [];
    for (let i = 0; i < 12; i++) mine.push(await TestClient.authenticated(running.url, token, { localAddress: '127.0.0.4' }));
    await expect(TestClient.connect(running.url, undefined, { localAddress: '127.0.0.4' })).rejects.toThrow(/429/);
    const other = await TestClient.authenticated(running.url, token, { localAddress: '127.0.0.5' });
    await mine[0]?.close();
    const again = await TestClient.authenticated(running.url, token, { localAddress: '127.0.0.4' });
    await Promise.all([...mine, other, again].map((c) => c.close()));
  });

  it('admits pages of the allowed origins only (HTTP 403), and clients that send no Origin', async () => {
    await expect(TestClient.connect(running.url, undefined, { origin: 'https://evil.example' })).rejects.toThrow(/403/);
    const page = await TestClient.connect(running.url, undefined, { origin: ORIGIN });
    const script = await TestClient.connect(running.url);
    await Promise.all([page.close(), script.close()]);
  });
});

describe('live gateway and Directus statuses that are no answer', () => {
  // Directus cannot be made to send these: a local server stands in for it. (429 and 401 come from
  // the real Directus in hostile.e2e.test.ts.)
  let status = 400;
  let server: Server;
  let running: RunningGateway;
  let remote: RunningGateway;

  beforeAll(async () => {
    server = createServer((req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ message: `status ${status} for ${req.url}` }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const env = {
      REDIS_URL: sharedRedisUrl(),
      DIRECTUS_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      DIRECTUS_SERVICE_TOKEN: 'unused',
    };
    running = await startGatewayInProcess({
      ...env,
      STREAM_KEY: uniqueName('gw'),
      INSTANCE_ID: uniqueName('pod'),
      DIRECTUS_SECRET: SECRET,
    });
    // Without the secret: tokens are verified by /users/me.
    remote = await startGatewayInProcess({ ...env, STREAM_KEY: uniqueName('gw'), INSTANCE_ID: uniqueName('pod') });
  });
  afterAll(async () => {
    await Promise.all([running.stop(), remote.stop()]);
    await new Promise((resolve) => server.close(resolve));
  });

  it.each([400, 405, 418, 422, 302])('treats HTTP %i as unavailable, not forbidden: at subscribe and at /users/me', async (code) => {
    status = code;
    const client = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    expect(await client.request({ type: 'subscribe', event_id: 4 })).toMatchObject({ type: 'error', code: 'authorization_unavailable' });
    await client.close();

    const other = await TestClient.connect(remote.url);
    expect(await other.request({ type: 'auth', access_token: await directusLikeToken('any-key') })).toMatchObject({
      type: 'error',
      code: 'authorization_unavailable',
    });
    expect(other.isClosed).toBe(false);
    await other.close();
  });
});
