import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { jwtVerify } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { EVENTS_CLAIM, EVENTS_PARTIAL_CLAIM, eventsClaimOf, type EventsClaim } from '@pitwall/directus-events-claim';
import { REPO_ROOT } from '@pitwall/testkit';
import { ensurePermissions, ensurePolicy, ensureUser } from '../src/seed/access.js';
import {
  createEventViewer,
  DirectusRest,
  eventReadPermissions,
  login,
  refresh,
  seedDirectus,
  setEventAccess,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
  startDirectus,
  type DirectusAdmin,
  type Seeded,
  type StartedDirectus,
} from '../src/index.js';

// The business plane's Directus extension, in a real Directus 11: what the access tokens of a login and
// of a refresh say about the events their user may read.

const HOUR = 3_600_000;

/** The verified claims of an access token (signed by that Directus). */
async function claimsOf(token: string, secret: string): Promise<Record<string, unknown>> {
  const { payload } = await jwtVerify(token, new TextEncoder().encode(secret), { algorithms: ['HS256'], issuer: 'directus' });
  return payload;
}

async function claimOf(token: string, secret: string): Promise<EventsClaim | undefined> {
  return eventsClaimOf(await claimsOf(token, secret));
}

async function status(url: string, path: string, token: string): Promise<number> {
  const res = await fetch(new URL(path, url), { headers: { authorization: `Bearer ${token}` } });
  await res.body?.cancel();
  return res.status;
}

interface EventTimes {
  starts_at: string | null;
  ends_at: string | null;
}

async function createEvents(admin: DirectusAdmin, events: Record<string, EventTimes>): Promise<Record<string, number>> {
  const rest = new DirectusRest(admin.url, admin.adminToken);
  const ids: Record<string, number> = {};
  for (const [name, times] of Object.entries(events)) {
    ids[name] = (await rest.post<{ id: number }>('/items/events', { name: `claim test ${name}`, status: 'scheduled', ...times })).id;
  }
  return ids;
}

function at(offsetMs: number): string {
  return new Date(Date.now() + offsetMs).toISOString();
}

describe('the events claim of the shared Directus (default settings)', () => {
  const url = sharedDirectusUrl();
  const secret = sharedDirectusSecret();
  const seed = sharedDirectusSeed();

  it('lists event 1 and not event 2 in the token of the viewer of event 1, signed by Directus', async () => {
    const session = await login(url, seed.users.viewerOne.email, seed.users.viewerOne.password);
    const claims = await claimsOf(session.accessToken, secret);
    expect(claims[EVENTS_CLAIM]).toContain(1);
    expect(claims[EVENTS_CLAIM]).not.toContain(2);
    expect(claims[EVENTS_PARTIAL_CLAIM]).toBeUndefined();
    // What Directus answers the gateway's own question for each.
    expect(await status(url, '/items/events/1?fields=id', session.accessToken)).toBe(200);
    expect(await status(url, '/items/events/2?fields=id', session.accessToken)).toBe(403);
  });

  it('lists every seeded event in the token of the viewer of every event, at login and at refresh', async () => {
    const session = await login(url, seed.users.viewerAll.email, seed.users.viewerAll.password);
    const ids = seed.events.map((e) => e.id);
    expect((await claimOf(session.accessToken, secret))?.events).toEqual(expect.arrayContaining(ids));
    const renewed = await refresh(url, session.refreshToken);
    expect(await claimOf(renewed.accessToken, secret)).toEqual({ events: expect.arrayContaining(ids) as unknown, partial: false });
  });

  it('drops an event whose permission is revoked at the next refresh, and lists it again once restored', async () => {
    const admin = sharedDirectusAdmin();
    const { user, policy } = await createEventViewer(admin, [2]);
    const session = await login(url, user.email, user.password);
    expect(await claimOf(session.accessToken, secret)).toEqual({ events: [2], partial: false });

    await setEventAccess(admin, policy, []);
    const revoked = await refresh(url, session.refreshToken);
    expect(await claimOf(revoked.accessToken, secret)).toEqual({ events: [], partial: false });
    expect(await status(url, '/items/events/2?fields=id', revoked.accessToken)).toBe(403);

    await setEventAccess(admin, policy, [2]);
    const restored = await refresh(url, revoked.refreshToken);
    expect(await claimOf(restored.accessToken, secret)).toEqual({ events: [2], partial: false });
  });

  it('lists an event created through Directus at the next login, whatever the window cache held', async () => {
    const admin = sharedDirectusAdmin();
    const { user, policy } = await createEventViewer(admin, []);
    // This login fills the window cache (PITWALL_EVENTS_CLAIM_WINDOW_CACHE, 10 s by default).
    expect((await claimOf((await login(url, user.email, user.password)).accessToken, secret))?.events).toEqual([]);
    const { created } = await createEvents(admin, { created: { starts_at: at(-HOUR), ends_at: at(HOUR) } });
    await setEventAccess(admin, policy, [created ?? 0]);
    expect((await claimOf((await login(url, user.email, user.password)).accessToken, secret))?.events).toEqual([created]);
  });

  it('gives a user Directus lets read no event at all an empty list, not a failed login', async () => {
    const rest = new DirectusRest(url, seed.adminToken);
    const user = await ensureUser(rest, { email: 'no-events@pitwall.example.com', password: 'no-events-pw', role: null });
    const session = await login(url, user.email, user.password);
    expect(await status(url, '/items/events/1?fields=id', session.accessToken)).toBe(403);
    expect(await claimOf(session.accessToken, secret)).toEqual({ events: [], partial: false });
  });

  it('counts the policies of a parent role, as Directus does for the user of a child role', async () => {
    const rest = new DirectusRest(url, seed.adminToken);
    const policy = await ensurePolicy(rest, 'claim test: reads event 3', {});
    await ensurePermissions(rest, policy, eventReadPermissions([3]));
    const parent = (await rest.post<{ id: string }>('/roles', { name: 'claim test parent', icon: 'group' })).id;
    await rest.post('/access', { role: parent, policy });
    const child = (await rest.post<{ id: string }>('/roles', { name: 'claim test child', icon: 'group', parent })).id;
    const user = await ensureUser(rest, { email: 'child-role@pitwall.example.com', password: 'child-role-pw', role: child });
    const session = await login(url, user.email, user.password);
    expect(await status(url, '/items/events/3?fields=id', session.accessToken)).toBe(200);
    expect(await claimOf(session.accessToken, secret)).toEqual({ events: [3], partial: false });
  });
});

describe('the events claim of a Directus with a cap of 3 and no window cache', () => {
  let directus: StartedDirectus;
  let seed: Seeded;
  let admin: DirectusAdmin;
  let events: Record<string, number>;

  beforeAll(async () => {
    const logDir = join(REPO_ROOT, 'test-results', 'e2e');
    mkdirSync(logDir, { recursive: true });
    directus = await startDirectus({
      postgresAdminUrl: inject('postgresUrl'),
      logFile: join(logDir, 'directus-events-claim.log'),
      env: { PITWALL_EVENTS_CLAIM_MAX: '3', PITWALL_EVENTS_CLAIM_WINDOW_CACHE: '0' },
    });
    seed = await seedDirectus(directus, { events: 3, devicesPerEvent: 1 });
    admin = { url: directus.url, adminToken: seed.adminToken };
    // Default window: starting within 2 h, over less than 30 min ago, no ends_at counted as 24 h.
    events = await createEvents(admin, {
      upcoming: { starts_at: at(HOUR), ends_at: at(3 * HOUR) },
      openRecent: { starts_at: at(-2 * HOUR), ends_at: null },
      justEnded: { starts_at: at(-3 * HOUR), ends_at: at(-10 * 60_000) },
      future: { starts_at: at(72 * HOUR), ends_at: at(74 * HOUR) },
      ended: { starts_at: at(-72 * HOUR), ends_at: at(-48 * HOUR) },
      openOld: { starts_at: at(-72 * HOUR), ends_at: null },
      unscheduled: { starts_at: null, ends_at: null },
    });
  });

  afterAll(async () => {
    await directus?.destroy();
  });

  it('lists only the events in the window, newest start first, though Directus lets the user read every one', async () => {
    const { user } = await createEventViewer(admin, Object.values(events));
    const session = await login(directus.url, user.email, user.password);
    for (const id of Object.values(events))
      expect(await status(directus.url, `/items/events/${id}?fields=id`, session.accessToken)).toBe(200);
    expect(await claimOf(session.accessToken, directus.secret)).toEqual({
      events: [events.upcoming, events.openRecent, events.justEnded],
      partial: false,
    });
  });

  it('lists at most 3 events and marks the token partial when the user may read more of the window', async () => {
    // The viewer of every event reads the 3 seeded live events and the 3 in-window ones above.
    const session = await login(directus.url, seed.users.viewerAll.email, seed.users.viewerAll.password);
    const claims = await claimsOf(session.accessToken, directus.secret);
    expect(claims[EVENTS_PARTIAL_CLAIM]).toBe(true);
    expect(eventsClaimOf(claims)?.events).toHaveLength(3);
    expect(eventsClaimOf(claims)?.events[0]).toBe(events.upcoming);

    const one = await login(directus.url, seed.users.viewerOne.email, seed.users.viewerOne.password);
    expect(await claimOf(one.accessToken, directus.secret)).toEqual({ events: [1], partial: false });
  });

  it('issues the token without the claim, and logs why, when its query fails; the next login has it again', async () => {
    const client = new pg.Client({ connectionString: databaseUrlOf(directus) });
    await client.connect();
    try {
      // Directus's cached schema still names the column: every query of the window now fails in PostgreSQL.
      await client.query('ALTER TABLE events RENAME COLUMN starts_at TO starts_at_moved');
      const session = await login(directus.url, seed.users.viewerOne.email, seed.users.viewerOne.password).finally(() =>
        client.query('ALTER TABLE events RENAME COLUMN starts_at_moved TO starts_at'),
      );
      const claims = await claimsOf(session.accessToken, directus.secret);
      expect(claims.id).toBe(seed.users.viewerOne.id);
      expect(claims[EVENTS_CLAIM]).toBeUndefined();
      await directus.waitForLine(/pitwall events claim left out of the login token/);
      expect(await status(directus.url, '/items/events/1?fields=id', session.accessToken)).toBe(200);

      const renewed = await refresh(directus.url, session.refreshToken);
      expect(await claimOf(renewed.accessToken, directus.secret)).toEqual({ events: [1], partial: false });
    } finally {
      await client.end();
    }
  });
});

function databaseUrlOf(directus: StartedDirectus): string {
  const url = new URL(inject('postgresUrl'));
  url.pathname = `/${directus.database}`;
  return url.toString();
}
