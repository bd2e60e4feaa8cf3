import { base64url } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, scrapeMetric, sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { TestClient } from './support/client.js';
import { startGatewayInProcess, type RunningGateway } from './support/gateway.js';
import { directusLikeToken } from './support/tokens.js';

// The WebSocket edge with real sockets and real Redis. Directus is deliberately unreachable here
// (nothing listens on DIRECTUS_URL): authentication is local (DIRECTUS_SECRET), and authorization
// must report `authorization_unavailable`. Flows with a real Directus are in *.e2e.test.ts.
const SECRET = 'gateway-int-secret';

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
      GATEWAY_MAX_MESSAGE_BYTES: '1024',
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

  it('closes an oversized frame with bad_request and 4400, and a binary frame with 4400', async () => {
    const big = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    big.send({ type: 'ping', pad: 'x'.repeat(2000) });
    expect((await big.closed).code).toBe(4400);
    expect(big.messages).toContainEqual(expect.objectContaining({ type: 'error', code: 'bad_request' }));

    const binary = await TestClient.authenticated(running.url, await directusLikeToken(SECRET));
    binary.sendRaw(Buffer.from([1, 2, 3]), true);
    expect((await binary.closed).code).toBe(4400);
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

  it('refuses connections beyond GATEWAY_MAX_CONNECTIONS with HTTP 503', async () => {
    const clients = await Promise.all(
      Array.from({ length: 50 - running.gateway.server.connectionCount }, () => TestClient.connect(running.url)),
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
