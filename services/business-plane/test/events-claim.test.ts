import { describe, expect, it } from 'vitest';
import {
  EVENTS_CLAIM_DEFAULTS,
  EventsClaimConfigError,
  eventsClaimOf,
  readEventsClaim,
  readEventsClaimConfig,
  type EventsClaimConfig,
} from '@pitwall/directus-events-claim';
import type {
  Accountability,
  Database,
  Item,
  ItemsServiceClass,
  Logger,
  Query,
  RoleQuery,
} from '../extensions/events-claim/src/directus.js';
import { LogThrottle } from '../extensions/events-claim/src/log-throttle.js';
import { EventsScope, rolesTree } from '../extensions/events-claim/src/scope.js';
import { WindowCache, windowFilter, type EventWindow } from '../extensions/events-claim/src/window.js';

const HOUR = 3_600_000;

describe('readEventsClaimConfig', () => {
  it('takes the documented defaults when nothing is set', () => {
    expect(readEventsClaimConfig({})).toEqual({
      enabled: true,
      leadMs: 2 * HOUR,
      graceMs: 30 * 60_000,
      openEndedMs: 24 * HOUR,
      maxEvents: 100,
      windowMax: 1000,
      windowCacheMs: 10_000,
    });
  });

  it("reads Directus's duration syntax, numbers as Directus casts them, and booleans", () => {
    const config = readEventsClaimConfig({
      PITWALL_EVENTS_CLAIM_ENABLED: false,
      PITWALL_EVENTS_CLAIM_LEAD: '90m',
      PITWALL_EVENTS_CLAIM_GRACE: 0,
      PITWALL_EVENTS_CLAIM_OPEN_ENDED: '2d',
      PITWALL_EVENTS_CLAIM_MAX: 5,
      PITWALL_EVENTS_CLAIM_WINDOW_MAX: '50',
      PITWALL_EVENTS_CLAIM_WINDOW_CACHE: '1500',
    });
    expect(config).toEqual({
      enabled: false,
      leadMs: 90 * 60_000,
      graceMs: 0,
      openEndedMs: 48 * HOUR,
      maxEvents: 5,
      windowMax: 50,
      windowCacheMs: 1500,
    });
  });

  it('refuses a bad value naming its variable', () => {
    const refused = (env: Record<string, unknown>): EventsClaimConfigError => {
      try {
        readEventsClaimConfig(env);
      } catch (err) {
        if (err instanceof EventsClaimConfigError) return err;
        throw err;
      }
      throw new Error(`accepted ${JSON.stringify(env)}`);
    };
    expect(refused({ PITWALL_EVENTS_CLAIM_LEAD: 'soon' }).variable).toBe('PITWALL_EVENTS_CLAIM_LEAD');
    expect(refused({ PITWALL_EVENTS_CLAIM_GRACE: '8d' }).message).toMatch(/^PITWALL_EVENTS_CLAIM_GRACE: .*7 days/);
    expect(refused({ PITWALL_EVENTS_CLAIM_MAX: 0 }).variable).toBe('PITWALL_EVENTS_CLAIM_MAX');
    // 200 ids keep a token inside the gateway's 4096-byte auth message.
    expect(refused({ PITWALL_EVENTS_CLAIM_MAX: 201 }).variable).toBe('PITWALL_EVENTS_CLAIM_MAX');
    expect(refused({ PITWALL_EVENTS_CLAIM_MAX: 20, PITWALL_EVENTS_CLAIM_WINDOW_MAX: 10 }).variable).toBe('PITWALL_EVENTS_CLAIM_WINDOW_MAX');
    expect(refused({ PITWALL_EVENTS_CLAIM_ENABLED: 'yes' }).code).toBe('events_claim_config_invalid');
  });
});

describe('windowFilter', () => {
  it('keeps events starting within the lead, not over for longer than the grace, open-ended ones for a day', () => {
    const now = Date.parse('2026-12-06T12:00:00.000Z');
    expect(windowFilter(now, EVENTS_CLAIM_DEFAULTS)).toEqual({
      _and: [
        { starts_at: { _lte: '2026-12-06T14:00:00.000Z' } },
        {
          _or: [
            { ends_at: { _gte: '2026-12-06T11:30:00.000Z' } },
            { _and: [{ ends_at: { _null: true } }, { starts_at: { _gte: '2026-12-05T11:30:00.000Z' } }] },
          ],
        },
      ],
    });
  });
});

describe('eventsClaimOf / readEventsClaim', () => {
  it('reads the ids and the partial marker, and nothing from a missing or malformed claim', () => {
    expect(eventsClaimOf({ pitwall_events: [3, 1] })).toEqual({ events: [3, 1], partial: false });
    expect(eventsClaimOf({ pitwall_events: [3], pitwall_events_partial: true })).toEqual({ events: [3], partial: true });
    expect(eventsClaimOf({ id: 'u' })).toBeUndefined();
    expect(eventsClaimOf({ pitwall_events: ['3'] })).toBeUndefined();
    expect(eventsClaimOf({ pitwall_events: [1.5] })).toBeUndefined();
  });

  it('decodes an unverified token for a look at what it carries', () => {
    const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
    const token = `${part({ alg: 'HS256' })}.${part({ id: 'ü', pitwall_events: [7], pitwall_events_partial: true })}.sig`;
    expect(readEventsClaim(token)).toEqual({ events: [7], partial: true });
    expect(readEventsClaim('not a token')).toBeUndefined();
  });
});

describe('WindowCache', () => {
  const window = (ids: number[]): EventWindow => ({ ids, truncated: false });

  it('serves many concurrent logins from one read, reads again after the TTL or a change to events', async () => {
    let now = 0;
    const cache = new WindowCache(10_000, () => now);
    let reads = 0;
    const read = (): Promise<EventWindow> => Promise.resolve(window([++reads]));
    const first = await Promise.all(Array.from({ length: 50 }, () => cache.get(read)));
    expect(reads).toBe(1);
    expect(new Set(first.map((w) => w.ids[0]))).toEqual(new Set([1]));
    now = 9_999;
    expect((await cache.get(read)).ids).toEqual([1]);
    now = 10_000;
    expect((await cache.get(read)).ids).toEqual([2]);
    cache.invalidate();
    expect((await cache.get(read)).ids).toEqual([3]);
  });

  it('keeps neither a failed read nor one that began before a change', async () => {
    const cache = new WindowCache(10_000, () => 0);
    await expect(cache.get(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect((await cache.get(() => Promise.resolve(window([1])))).ids).toEqual([1]);

    cache.invalidate();
    let release: (w: EventWindow) => void = () => undefined;
    const stale = cache.get(() => new Promise<EventWindow>((resolve) => (release = resolve)));
    cache.invalidate();
    release(window([2]));
    expect((await stale).ids).toEqual([2]);
    expect((await cache.get(() => Promise.resolve(window([3])))).ids).toEqual([3]);
  });

  it('reads every time when the TTL is 0', async () => {
    const cache = new WindowCache(0, () => 0);
    let reads = 0;
    await Promise.all([1, 2, 3].map(() => cache.get(() => Promise.resolve(window([++reads])))));
    expect(reads).toBe(3);
  });
});

describe('LogThrottle', () => {
  it('lets one line through per interval and counts the ones it held back', () => {
    let now = 0;
    const throttle = new LogThrottle(10_000, () => now);
    expect(throttle.take()).toBe(0);
    expect(throttle.take()).toBeUndefined();
    now = 5_000;
    expect(throttle.take()).toBeUndefined();
    now = 10_000;
    expect(throttle.take()).toBe(2);
  });
});

// EventsScope with stand-ins for Directus's ItemsService and knex: how the claim is put together from
// what Directus answers (the answers themselves are Directus's: see events-claim.e2e.test.ts).

interface ServiceCall {
  accountability: Accountability | null;
  query: Query;
}

function fakeDirectus(options: {
  window: number[];
  readable: (ids: number[], accountability: Accountability) => number[] | Error;
  roles?: Record<string, string | null>;
}): { ItemsService: ItemsServiceClass; database: Database; calls: ServiceCall[] } {
  const calls: ServiceCall[] = [];
  class FakeItemsService {
    constructor(
      readonly collection: string,
      readonly opts: { accountability: Accountability | null },
    ) {}

    readByQuery(query: Query): Promise<Item[]> {
      calls.push({ accountability: this.opts.accountability, query });
      if (this.opts.accountability === null) return Promise.resolve(options.window.slice(0, query.limit).map((id) => ({ id })));
      const inFilter = (query.filter?.id as { _in: number[] })._in;
      const answer = options.readable(inFilter, this.opts.accountability);
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer.map((id) => ({ id: String(id) })));
    }
  }
  const database: Database = () => {
    let id = '';
    const query: RoleQuery = {
      select: () => query,
      where: (_column, value) => {
        id = value;
        return query;
      },
      first: () => Promise.resolve(id in (options.roles ?? {}) ? { id, parent: options.roles?.[id] ?? null } : undefined),
    };
    return query;
  };
  return { ItemsService: FakeItemsService, database, calls };
}

function recordingLogger(): Logger & { warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  return { warnings, info: () => undefined, warn: (object) => warnings.push(object) };
}

function scopeWith(
  fake: ReturnType<typeof fakeDirectus>,
  config: Partial<EventsClaimConfig> = {},
  logger = recordingLogger(),
): EventsScope {
  return new EventsScope({
    config: { ...EVENTS_CLAIM_DEFAULTS, windowCacheMs: 0, ...config },
    ItemsService: fake.ItemsService,
    database: fake.database,
    getSchema: () => Promise.resolve({}),
    logger,
  });
}

const LOGIN = { event: 'auth.jwt', type: 'login' };
const user = { id: 'user-1', role: 'child', app_access: false, admin_access: false };

describe('EventsScope', () => {
  it('asks Directus as the user (role tree, access flags, request IP) which window events it may read, in window order', async () => {
    const fake = fakeDirectus({ window: [9, 7, 5, 3], readable: () => [3, 9, 5], roles: { child: 'parent', parent: null } });
    const claimed = await scopeWith(fake).addClaim(user, LOGIN, { accountability: { ip: '10.0.0.8' } });
    expect(claimed).toEqual({ ...user, pitwall_events: [9, 5, 3] });
    const asUser = fake.calls.find((c) => c.accountability !== null);
    expect(asUser?.accountability).toEqual({
      user: 'user-1',
      role: 'child',
      roles: ['parent', 'child'],
      admin: false,
      app: false,
      ip: '10.0.0.8',
    });
    expect(asUser?.query).toEqual({ fields: ['id'], filter: { id: { _in: [9, 7, 5, 3] } }, limit: 4 });
  });

  it('caps the list and marks it partial; a window cut at its maximum makes every claim partial', async () => {
    const everything = fakeDirectus({ window: [6, 5, 4, 3, 2, 1], readable: (ids) => ids });
    expect(await scopeWith(everything, { maxEvents: 2 }).addClaim(user, LOGIN, {})).toMatchObject({
      pitwall_events: [6, 5],
      pitwall_events_partial: true,
    });
    const one = fakeDirectus({ window: [6, 5, 4, 3, 2, 1], readable: () => [4] });
    expect(await scopeWith(one, { maxEvents: 2, windowMax: 4 }).addClaim(user, LOGIN, {})).toMatchObject({
      pitwall_events: [4],
      pitwall_events_partial: true,
    });
    expect(await scopeWith(one, { maxEvents: 2, windowMax: 6 }).addClaim(user, LOGIN, {})).not.toHaveProperty('pitwall_events_partial');
  });

  it('lists nothing for a user Directus refuses events altogether (FORBIDDEN), and asks nothing when the window is empty', async () => {
    const forbidden = Object.assign(new Error("You don't have permission to access this."), { code: 'FORBIDDEN' });
    const refused = fakeDirectus({ window: [1], readable: () => forbidden });
    expect(await scopeWith(refused).addClaim(user, LOGIN, {})).toEqual({ ...user, pitwall_events: [] });
    const empty = fakeDirectus({ window: [], readable: () => new Error('not asked') });
    expect(await scopeWith(empty).addClaim(user, LOGIN, {})).toEqual({ ...user, pitwall_events: [] });
    expect(empty.calls).toHaveLength(1);
  });

  it('issues the token unchanged when Directus fails, logging the first failure and then at most one per 10 s', async () => {
    const logger = recordingLogger();
    const broken = fakeDirectus({ window: [1], readable: () => new Error('connection terminated') });
    const scope = scopeWith(broken, {}, logger);
    for (let i = 0; i < 3; i++) expect(await scope.addClaim(user, { event: 'auth.jwt', type: 'refresh' }, {})).toEqual(user);
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toMatchObject({ user: 'user-1', type: 'refresh' });
  });

  it('leaves share sessions (no user) alone', async () => {
    const fake = fakeDirectus({ window: [1], readable: (ids) => ids });
    const share = { share: 'share-1', role: null, app_access: false, admin_access: false };
    expect(await scopeWith(fake).addClaim(share, { event: 'auth.jwt', type: 'refresh' }, {})).toEqual(share);
    expect(fake.calls).toEqual([]);
  });
});

describe('rolesTree', () => {
  it('walks a role up to its root, root first, and stops on a loop', async () => {
    const { database } = fakeDirectus({ window: [], readable: () => [], roles: { c: 'b', b: 'a', a: null, x: 'y', y: 'x' } });
    expect(await rolesTree('c', database)).toEqual(['a', 'b', 'c']);
    expect(await rolesTree(null, database)).toEqual([]);
    expect(await rolesTree('x', database)).toEqual(['y', 'x']);
  });
});
