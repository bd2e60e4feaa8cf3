import { SignJWT, decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { readEventsClaim } from '@pitwall/directus-events-claim';
import {
  DirectusCallCounter,
  DirectusRest,
  callsBetween,
  createEventViewer,
  login,
  refresh,
  setEventAccess,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
  type DirectusCalls,
} from '@pitwall/business-plane';
import { freePort, scrapeMetric, sharedRedisUrl, startService, uniqueName, type ServiceProcess } from '@pitwall/testkit';
import { TestClient } from './support/client.js';

// Issue 16: the gateway authorizes a subscribe from the access token's pitwall_events claim (added by
// the business plane's Directus extension), with the shared real Directus behind a counting proxy, so
// every call the gateway makes is counted at the wire.

interface Gateway {
  service: ServiceProcess;
  url: string;
}

const DAY = 86_400_000;

describe('live gateway: authorization from the token claim (shared Directus)', () => {
  const directusUrl = sharedDirectusUrl();
  const secret = sharedDirectusSecret();
  const seed = sharedDirectusSeed();
  const admin = sharedDirectusAdmin();
  const gateways: Gateway[] = [];
  let counter: DirectusCallCounter;

  beforeAll(async () => {
    counter = await DirectusCallCounter.start(directusUrl);
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.service.proc.stop()));
    await counter.stop();
  });

  /** `verify`: tokens checked locally with DIRECTUS_SECRET, or by Directus /users/me (no secret). */
  async function startGateway(verify: 'local' | 'directus' = 'local'): Promise<Gateway> {
    const port = await freePort();
    const service = await startService('live-gateway', {
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: uniqueName('claim'),
      INSTANCE_ID: uniqueName('pod'),
      GATEWAY_PORT: String(port),
      DIRECTUS_URL: counter.url,
      DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
      // Long enough that only a token refresh can end a subscription in these tests.
      GATEWAY_REVALIDATE_INTERVAL_MS: '600000',
      LOG_LEVEL: 'debug',
      ...(verify === 'local' ? { DIRECTUS_SECRET: secret } : {}),
    });
    onTestFailed(() => console.log(`live-gateway output:\n${service.proc.output(200)}`));
    const gateway = { service, url: `ws://127.0.0.1:${port}` };
    gateways.push(gateway);
    return gateway;
  }

  /** The Directus calls `act` made the gateway do. */
  async function callsDuring(act: () => Promise<void>): Promise<DirectusCalls> {
    const before = counter.snapshot();
    await act();
    return callsBetween(before, counter.snapshot());
  }

  it('lists event 1 and not 2 in the token of the viewer of event 1, both in that of the viewer of every event', async () => {
    const one = await login(directusUrl, seed.users.viewerOne.email, seed.users.viewerOne.password);
    const all = await login(directusUrl, seed.users.viewerAll.email, seed.users.viewerAll.password);
    expect(readEventsClaim(one.accessToken)?.events).toContain(1);
    expect(readEventsClaim(one.accessToken)?.events).not.toContain(2);
    expect(readEventsClaim(all.accessToken)?.events).toEqual(expect.arrayContaining([1, 2]));
    expect(readEventsClaim(all.accessToken)?.partial).toBe(false);
  });

  it('subscribes to a claimed event with no authorization call to Directus (local verification and /users/me)', async () => {
    const local = await startGateway();
    const remote = await startGateway('directus');
    const { accessToken } = await login(directusUrl, seed.users.viewerOne.email, seed.users.viewerOne.password);

    for (const gateway of [local, remote]) {
      const client = await TestClient.authenticated(gateway.url, accessToken);
      const claimed = await callsDuring(async () => {
        expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'subscribed', event_id: 1 });
      });
      // The entries come from the event directory with the service token (once per event per pod), not per user.
      expect(claimed.authorize).toBe(0);
      expect(claimed.entries).toBeLessThanOrEqual(1);
      // Event 2 is not in this viewer's claim: Directus decides (and refuses).
      const unclaimed = await callsDuring(async () => {
        expect(await client.request({ type: 'subscribe', event_id: 2 })).toMatchObject({ type: 'error', code: 'forbidden', event_id: 2 });
      });
      expect(unclaimed.authorize).toBe(1);
      await client.close();
    }
    expect(await scrapeMetric(local.service.metricsUrl, 'pitwall_live_gateway_claim_authorizations_total', { result: 'allowed' })).toBe(1);
    // No Directus authorization allowed anything (the counter is not even exported until one does).
    expect(
      await scrapeMetric(local.service.metricsUrl, 'pitwall_live_gateway_authorization_calls_total', { result: 'allowed' }).catch(() => 0),
    ).toBe(0);
  });

  it('ends the live subscription when a refreshed token no longer lists the revoked event', async () => {
    const gateway = await startGateway();
    const { user, policy } = await createEventViewer(admin, [1]);
    const session = await login(directusUrl, user.email, user.password);
    expect(readEventsClaim(session.accessToken)?.events).toContain(1);
    const client = await TestClient.authenticated(gateway.url, session.accessToken);
    const subscribed = await callsDuring(async () => {
      expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'subscribed' });
    });
    expect(subscribed.authorize).toBe(0);

    await setEventAccess(admin, policy, []);
    const refreshed = await refresh(directusUrl, session.refreshToken);
    expect(readEventsClaim(refreshed.accessToken)?.events).not.toContain(1);
    const recheck = await callsDuring(async () => {
      expect(await client.request({ type: 'auth', access_token: refreshed.accessToken })).toMatchObject({ type: 'auth', status: 'ok' });
      const ended = await client.expect((m) => m.type === 'unsubscribed', 'unsubscribed after the refresh');
      expect(ended).toEqual({ type: 'unsubscribed', event_id: 1, reason: 'forbidden' });
    });
    // The event left the claim: one Directus check (the fallback) decided it.
    expect(recheck.authorize).toBe(1);
    expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'error', code: 'forbidden' });
    await client.close();
  });

  it('asks Directus about an event outside the claim window that the user may read', async () => {
    const gateway = await startGateway();
    const rest = new DirectusRest(admin.url, admin.adminToken);
    const later = await rest.post<{ id: number }>('/items/events', {
      name: `claim e2e ${uniqueName('later')}`,
      status: 'scheduled',
      starts_at: new Date(Date.now() + 30 * DAY).toISOString(),
      ends_at: new Date(Date.now() + 30 * DAY + 3_600_000).toISOString(),
    });
    const { user } = await createEventViewer(admin, [1, later.id]);
    const { accessToken } = await login(directusUrl, user.email, user.password);
    expect(readEventsClaim(accessToken)?.events).toContain(1);
    expect(readEventsClaim(accessToken)?.events).not.toContain(later.id);
    const client = await TestClient.authenticated(gateway.url, accessToken);
    const outside = await callsDuring(async () => {
      expect(await client.request({ type: 'subscribe', event_id: later.id })).toMatchObject({ type: 'subscribed', event_id: later.id });
    });
    expect(outside.authorize).toBe(1);
    const inside = await callsDuring(async () => {
      expect(await client.request({ type: 'subscribe', event_id: 1 })).toMatchObject({ type: 'subscribed', event_id: 1 });
    });
    expect(inside.authorize).toBe(0);
    await client.close();
  });

  it('refuses a token with a forged claim (signed with another secret, or its payload edited) as any forged token', async () => {
    const gateway = await startGateway();
    const { accessToken } = await login(directusUrl, seed.users.viewerOne.email, seed.users.viewerOne.password);
    const claims = decodeJwt(accessToken);
    const widened = { ...claims, pitwall_events: [1, 2, 3] };
    const otherSecret = await new SignJWT(widened)
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .sign(new TextEncoder().encode('another-secret-that-directus-never-used-0123456789'));
    const [header, , signature] = accessToken.split('.');
    const edited = `${header}.${Buffer.from(JSON.stringify(widened)).toString('base64url')}.${signature}`;
    for (const forged of [otherSecret, edited]) {
      const calls = await callsDuring(async () => {
        const client = await TestClient.connect(gateway.url);
        client.send({ type: 'auth', access_token: forged, uid: 'a' });
        expect(await client.expect((m) => m.uid === 'a', 'the answer to auth')).toMatchObject({ type: 'error', code: 'unauthenticated' });
        expect((await client.closed).code).toBe(4401);
      });
      expect(calls.total).toBe(0);
    }
  });
});
