import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sharedDirectusSecret, sharedDirectusSeed, sharedDirectusUrl } from '@pitwall/business-plane';
import { REPO_ROOT, sharedRedisUrl } from '@pitwall/testkit';
import { startMapServer, startPipeline, startRace, type MapServer, type Pipeline, type Race } from '../src/index.js';
import { launchChromium } from './support/browser.js';

// The live map of `make up` in a real browser (Debian chromium): a demo viewer logs in through
// Directus, watches its event's cars move over the gateway, and is refused the event it may not watch.

const ARTIFACTS = join(REPO_ROOT, 'test-results', 'e2e');

/** What app.js keeps on window.pitwall (read inside the page; `globalThis` is the window there). */
interface MapWindow {
  pitwall: {
    connection: string;
    subscribedEventId?: number;
    positions: Map<string, { device_id: string; label: string; lat: number; lon: number }>;
    trails: Map<string, [number, number, number][]>;
    historyPositions: number;
    moves: number;
    errors: { code: string; message: string }[];
    session: { accessToken: string };
    refreshNow: () => Promise<void>;
  };
}

interface PageState {
  connection: string;
  subscribed: number | null;
  cars: { id: string; label: string; lat: number; lon: number }[];
  moves: number;
  errors: { code: string; message: string }[];
}

function readState(page: Page): Promise<PageState> {
  return page.evaluate(() => {
    const s = (globalThis as unknown as MapWindow).pitwall;
    return {
      connection: s.connection,
      subscribed: s.subscribedEventId ?? null,
      cars: [...s.positions.values()].map((p) => ({ id: p.device_id, label: p.label, lat: p.lat, lon: p.lon })),
      moves: s.moves,
      errors: s.errors.map((e) => ({ code: e.code, message: e.message })),
    };
  });
}

let pipeline: Pipeline;
let race: Race;
let map: MapServer;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const seed = sharedDirectusSeed();
  pipeline = await startPipeline({
    ports: 'free',
    logDir: join(ARTIFACTS, 'live-map'),
    redisUrl: sharedRedisUrl(),
    postgresAdminUrl: inject('postgresUrl'),
    directus: { url: sharedDirectusUrl(), secret: sharedDirectusSecret(), seed },
  });
  race = startRace({ host: '127.0.0.1', port: pipeline.ingestionPort, devices: seed.devices.length, fixIntervalMs: 250 });
  map = await startMapServer(
    0,
    {
      directusUrl: pipeline.directusUrl,
      gatewayUrls: pipeline.gatewayUrls,
      defaultEventId: 1,
      demoLogins: [
        { role: 'viewer of one event', email: seed.users.viewerOne.email, password: seed.users.viewerOne.password, note: 'event 1 only' },
      ],
    },
    race.track,
  );
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await map?.close();
  await race?.stop();
  await pipeline?.stop();
});

describe('the live map in Chromium', () => {
  it("logs a viewer in, shows its event's cars moving, and refuses an event it may not watch", async () => {
    const seed = sharedDirectusSeed();
    const imeiOf = new Map(seed.devices.map((d) => [d.id, d.imei]));
    const event1 = seed.entries
      .filter((e) => e.event === 1)
      .map((e) => imeiOf.get(e.device))
      .sort();
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    try {
      await page.goto(map.url);
      // The form is prefilled with the demo login.
      expect(await page.inputValue('#email')).toBe(seed.users.viewerOne.email);
      await page.click('#login-button');
      await page.waitForSelector('#connection-state[data-state="subscribed"]', { timeout: 30_000 });
      expect(await page.locator('#event-select option').allTextContents()).toEqual([expect.stringContaining('1 ·')]);

      await page.waitForFunction(() => (globalThis as unknown as MapWindow).pitwall.positions.size === 4, null, { timeout: 30_000 });
      const before = await readState(page);
      await page.waitForFunction((moves) => (globalThis as unknown as MapWindow).pitwall.moves >= moves + 8, before.moves, {
        timeout: 30_000,
      });
      const after = await readState(page);
      expect(after.subscribed).toBe(1);
      expect(after.cars.map((c) => c.id).sort()).toEqual(event1);
      // Markers moved: at least one car is somewhere else than a moment ago.
      const moved = after.cars.filter((car) => {
        const old = before.cars.find((c) => c.id === car.id);
        return old !== undefined && (old.lat !== car.lat || old.lon !== car.lon);
      });
      expect(moved.length).toBeGreaterThan(0);
      expect(after.cars.every((c) => c.label.startsWith('#'))).toBe(true);
      expect(await page.locator('#marker-count').textContent()).toBe('4');
      // Trails: the subscribe asked for history_seconds (the race ran before the login), and every car's
      // trail grows with its fixes, oldest first.
      const trails = await page.evaluate(() => {
        const s = (globalThis as unknown as MapWindow).pitwall;
        return {
          history: s.historyPositions,
          lengths: [...s.trails.values()].map((t) => t.length),
          ordered: [...s.trails.values()].every((t) => t.every((p, i) => i === 0 || (t[i - 1]?.[2] ?? 0) < p[2])),
        };
      });
      expect(trails.history).toBeGreaterThan(0);
      expect(trails.lengths).toHaveLength(4);
      expect(Math.min(...trails.lengths)).toBeGreaterThan(1);
      expect(trails.ordered).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'live-map-event-1.png') });

      // Directus realtime (the page's second socket, same token): a car entered in the event while the
      // page is open is listed with its label at once, before the gateway has any position of it.
      const admin = async (method: string, path: string, body?: unknown): Promise<{ id: number }> => {
        const res = await fetch(`${pipeline.directusUrl}${path}`, {
          method,
          headers: { authorization: `Bearer ${seed.adminToken}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
        return res.status === 204 ? { id: 0 } : ((await res.json()) as { data: { id: number } }).data;
      };
      const imei = `3563070${String(Date.now()).slice(-8)}`;
      const device = await admin('POST', '/items/devices', { imei, name: 'realtime test car' });
      const entry = await admin('POST', '/items/entries', { event: 1, device: device.id, label: '#99 Realtime' });
      try {
        await page.waitForSelector(`#devices tr[data-device="${imei}"][data-no-fix="true"]`, { timeout: 20_000 });
        expect(await page.locator(`#devices tr[data-device="${imei}"] td`).first().textContent()).toBe('#99 Realtime');
      } finally {
        await admin('DELETE', `/items/entries/${entry.id}`);
        await admin('DELETE', `/items/devices/${device.id}`);
      }
      await page.waitForSelector(`#devices tr[data-device="${imei}"]`, { state: 'detached', timeout: 20_000 });

      // The page refreshes its Directus token before expiry and re-authenticates the live socket
      // with it, without losing the subscription (forced here instead of waiting 15 minutes).
      const tokenBefore = await page.evaluate(() => (globalThis as unknown as MapWindow).pitwall.session.accessToken);
      await page.evaluate(() => (globalThis as unknown as MapWindow).pitwall.refreshNow());
      const tokenAfter = await page.evaluate(() => (globalThis as unknown as MapWindow).pitwall.session.accessToken);
      expect(tokenAfter).not.toBe(tokenBefore);
      const movesAfterRefresh = (await readState(page)).moves;
      await page.waitForFunction((moves) => (globalThis as unknown as MapWindow).pitwall.moves >= moves + 4, movesAfterRefresh, {
        timeout: 30_000,
      });
      expect((await readState(page)).errors).toEqual([]);

      // Event 2 is not in the viewer's list; asking for it by id is refused by the gateway.
      await page.fill('#event-id', '2');
      await page.click('#watch-button');
      await page.waitForSelector('#errors li[data-code="forbidden"]', { timeout: 20_000 });
      const refused = await readState(page);
      expect(refused.subscribed).toBeNull();
      expect(refused.cars).toEqual([]);
      expect(refused.connection).toBe('authenticated');
      // And no car of event 2 shows up afterwards either.
      await page.waitForTimeout(1_000);
      expect((await readState(page)).cars).toEqual([]);
      await page.screenshot({ path: join(ARTIFACTS, 'live-map-event-2-forbidden.png') });
      expect(pageErrors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
