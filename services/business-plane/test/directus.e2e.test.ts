import { jwtVerify } from 'jose';
import { describe, expect, inject, it } from 'vitest';
import {
  createEventViewer,
  login,
  refresh,
  seedDirectus,
  setEventAccess,
  sharedDirectusAdmin,
  sharedDirectusSecret,
  sharedDirectusSeed,
  sharedDirectusUrl,
  startDirectus,
} from '../src/index.js';

async function status(url: string, path: string, token: string): Promise<number> {
  const res = await fetch(new URL(path, url), { headers: { authorization: `Bearer ${token}` } });
  await res.body?.cancel();
  return res.status;
}

async function items<T>(url: string, path: string, token: string): Promise<T[]> {
  const res = await fetch(new URL(path, url), { headers: { authorization: `Bearer ${token}` } });
  expect(res.status, await res.clone().text()).toBe(200);
  return ((await res.json()) as { data: T[] }).data;
}

describe('the shared, seeded Directus', () => {
  const url = sharedDirectusUrl();
  const seed = sharedDirectusSeed();

  it('seeds the demo data the simulator drives: device i has IMEI 356307040000000+i, k devices per event', () => {
    expect(seed.events.map((e) => e.id)).toEqual([1, 2, 3]);
    expect(seed.devices.map((d) => d.imei)).toEqual(Array.from({ length: 12 }, (_, i) => String(356307040000000 + i)));
    const imeisOf = (eventId: number) =>
      seed.entries.filter((e) => e.event === eventId).map((e) => seed.devices.find((d) => d.id === e.device)?.imei);
    expect(imeisOf(1)).toEqual(['356307040000000', '356307040000001', '356307040000002', '356307040000003']);
    expect(imeisOf(2)).toEqual(['356307040000004', '356307040000005', '356307040000006', '356307040000007']);
  });

  it('logs a demo viewer in and issues an HS256 JWT signed with the instance secret, which refreshes', async () => {
    const session = await login(url, seed.users.viewerOne.email, seed.users.viewerOne.password);
    const { payload } = await jwtVerify(session.accessToken, new TextEncoder().encode(sharedDirectusSecret()), {
      algorithms: ['HS256'],
      issuer: 'directus',
    });
    expect(payload.id).toBe(seed.users.viewerOne.id);
    expect(session.expiresAt).toBe((payload.exp ?? 0) * 1000);
    expect(session.expiresAt).toBeGreaterThan(Date.now());

    const renewed = await refresh(url, session.refreshToken);
    expect(renewed.refreshToken).not.toBe(session.refreshToken);
    expect(await status(url, '/users/me', renewed.accessToken)).toBe(200);
    await expect(login(url, seed.users.viewerOne.email, 'wrong password')).rejects.toThrow(/401/);
  });

  it('lets the viewer of one event read event 1 (200) and not event 2 (403), and only event 1 entries and devices', async () => {
    const { accessToken } = await login(url, seed.users.viewerOne.email, seed.users.viewerOne.password);
    expect(await status(url, '/items/events/1', accessToken)).toBe(200);
    expect(await status(url, '/items/events/2', accessToken)).toBe(403);
    expect((await items<{ id: number }>(url, '/items/events', accessToken)).map((e) => e.id)).toEqual([1]);
    const entries = await items<{ event: number }>(url, '/items/entries?limit=-1', accessToken);
    expect(entries.length).toBe(4);
    expect(new Set(entries.map((e) => e.event))).toEqual(new Set([1]));
    const devices = await items<{ imei: string }>(url, '/items/devices?limit=-1', accessToken);
    expect(devices.map((d) => d.imei).sort()).toEqual(['356307040000000', '356307040000001', '356307040000002', '356307040000003']);
  });

  it('lets the viewer of every event read them all, and neither viewer write', async () => {
    const { accessToken } = await login(url, seed.users.viewerAll.email, seed.users.viewerAll.password);
    for (const event of seed.events) expect(await status(url, `/items/events/${event.id}`, accessToken)).toBe(200);
    // Other suites add entries to this shared Directus while this runs: what matters is that every seeded one is readable.
    const readable = new Set((await items<{ id: number }>(url, '/items/entries?limit=-1&fields=id', accessToken)).map((e) => e.id));
    expect(seed.entries.length).toBe(12);
    expect(seed.entries.filter((e) => !readable.has(e.id))).toEqual([]);
    const res = await fetch(`${url}/items/events/1`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'renamed' }),
    });
    expect(res.status).toBe(403);
  });

  it('lets the operator create, update and delete business data', async () => {
    const { accessToken } = await login(url, seed.users.operator.email, seed.users.operator.password);
    const headers = { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' };
    const created = await fetch(`${url}/items/devices`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ imei: '356307049999999', name: 'spare' }),
    });
    expect(created.status).toBe(200);
    const { data } = (await created.json()) as { data: { id: number } };
    const updated = await fetch(`${url}/items/devices/${data.id}`, { method: 'PATCH', headers, body: JSON.stringify({ name: 'spare 2' }) });
    expect(updated.status).toBe(200);
    const deleted = await fetch(`${url}/items/devices/${data.id}`, { method: 'DELETE', headers });
    expect(deleted.status).toBe(204);
  });

  it("reads an event's entries with their devices' IMEIs through the service user's static token", async () => {
    const rows = await items<{ label: string; device: { imei: string } }>(
      url,
      '/items/entries?fields=label,device.imei&filter[event][_eq]=2&limit=-1',
      seed.serviceToken,
    );
    expect(rows.map((r) => r.device.imei).sort()).toEqual(['356307040000004', '356307040000005', '356307040000006', '356307040000007']);
    expect(rows.every((r) => r.label.startsWith('#'))).toBe(true);
    expect(await status(url, '/items/events/3', seed.serviceToken)).toBe(200);
  });

  it("revokes and restores a viewer's access to an event, effective on the next request", async () => {
    const admin = sharedDirectusAdmin();
    const { user, policy } = await createEventViewer(admin, [2]);
    const { accessToken } = await login(url, user.email, user.password);
    expect(await status(url, '/items/events/2', accessToken)).toBe(200);
    expect(await status(url, '/items/events/1', accessToken)).toBe(403);

    await setEventAccess(admin, policy, []);
    expect(await status(url, '/items/events/2', accessToken)).toBe(403);
    expect(await items(url, '/items/entries', accessToken)).toEqual([]);

    await setEventAccess(admin, policy, [2]);
    expect(await status(url, '/items/events/2', accessToken)).toBe(200);
  });
});

describe('an own Directus instance', () => {
  it('keeps its data, secret and sessions across a crash and restart, with the access-token lifetime it was given', async () => {
    const directus = await startDirectus({ postgresAdminUrl: inject('postgresUrl'), accessTokenTtl: '7m' });
    try {
      const seed = await seedDirectus(directus, { events: 2, devicesPerEvent: 2, serviceToken: 'restart-token' });
      const before = await login(directus.url, seed.users.viewerOne.email, seed.users.viewerOne.password);
      const { payload } = await jwtVerify(before.accessToken, new TextEncoder().encode(directus.secret), {
        algorithms: ['HS256'],
        issuer: 'directus',
      });
      expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(7 * 60);

      await directus.kill();
      expect(directus.running).toBe(false);
      expect(await fetch(`${directus.url}/server/health`).catch(() => 'down')).toBe('down');
      await directus.restart();
      // Same secret: the token issued before the crash is still good; the session survived too.
      expect(await status(directus.url, '/items/events/1', before.accessToken)).toBe(200);
      const after = await refresh(directus.url, before.refreshToken);
      expect(await status(directus.url, '/items/events/2', after.accessToken)).toBe(403);
      expect((await items(directus.url, '/items/entries', 'restart-token')).length).toBe(4);

      // Seeding again finds what is there instead of duplicating it.
      const again = await seedDirectus(directus, { events: 2, devicesPerEvent: 2, serviceToken: 'restart-token' });
      expect(again.events).toEqual(seed.events);
      expect(again.entries).toEqual(seed.entries);
      expect(again.policies).toEqual(seed.policies);
      expect(Object.values(again.users).map((u) => u.id)).toEqual(Object.values(seed.users).map((u) => u.id));
    } finally {
      await directus.destroy();
    }
  });
});
