import { EVENTS_CLAIM, EVENTS_PARTIAL_CLAIM, type EventsClaim } from './claim.js';
import type { EventsClaimConfig } from './config.js';
import {
  directusErrorCode,
  type Accountability,
  type Database,
  type EventContext,
  type FilterMeta,
  type ItemsServiceClass,
  type Logger,
  type SchemaOverview,
} from './directus.js';
import { LogThrottle } from './log-throttle.js';
import { EVENTS_COLLECTION, eventId, WINDOW_SORT, WindowCache, windowFilter, type EventWindow } from './window.js';

export interface EventsScopeOptions {
  config: EventsClaimConfig;
  ItemsService: ItemsServiceClass;
  /** Directus's database (the register context's); an event's own context wins when it has one. */
  database: Database;
  getSchema(): Promise<SchemaOverview>;
  logger: Logger;
  now?: () => number;
}

const FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * Computes a token's events claim. Which events the user may read is never decided here: the ids of
 * the window's events are handed to Directus's ItemsService acting as that user (the accountability
 * Directus would build from the token being issued), and the claim lists what it returns. That is the
 * same read, with the same permission evaluation, as the gateway's `GET /items/events/:id?fields=id`.
 */
export class EventsScope {
  private readonly window: WindowCache;
  private readonly failures: LogThrottle;
  private readonly now: () => number;

  constructor(private readonly options: EventsScopeOptions) {
    this.now = options.now ?? Date.now;
    this.window = new WindowCache(options.config.windowCacheMs, this.now);
    this.failures = new LogThrottle(FAILURE_LOG_INTERVAL_MS, this.now);
  }

  /** Events were created, changed or deleted through Directus: the cached window is stale. */
  eventsChanged(): void {
    this.window.invalidate();
  }

  /**
   * The auth.jwt filter: the token payload with the claim, or the payload unchanged when anything
   * failed (logged). A login or refresh never fails because of the claim; a token without one only
   * costs its holder a Directus call per subscription, as before the extension.
   */
  async addClaim(payload: Record<string, unknown>, meta: FilterMeta, context: EventContext): Promise<Record<string, unknown>> {
    const user = payload.id;
    // Share sessions (refreshed share links) have no user: nothing to list.
    if (typeof user !== 'string') return payload;
    try {
      const claim = await this.claimFor(user, payload, context);
      return { ...payload, [EVENTS_CLAIM]: claim.events, ...(claim.partial ? { [EVENTS_PARTIAL_CLAIM]: true } : {}) };
    } catch (err) {
      const suppressed = this.failures.take();
      if (suppressed !== undefined) {
        this.options.logger.warn(
          { err, user, type: meta.type, suppressedSinceLastLog: suppressed },
          `pitwall events claim left out of the ${meta.type ?? 'issued'} token (the token is issued without it)`,
        );
      }
      return payload;
    }
  }

  private async claimFor(user: string, payload: Record<string, unknown>, context: EventContext): Promise<EventsClaim> {
    const { config } = this.options;
    const schema = context.schema ?? (await this.options.getSchema());
    const database = context.database ?? this.options.database;
    const window = await this.window.get((nowMs) => this.readWindow(nowMs, schema, database));
    if (window.ids.length === 0) return { events: [], partial: window.truncated };
    const accountability = await this.accountabilityOf(user, payload, context, database);
    const readable = await this.readableOf(window.ids, accountability, schema, database);
    const listed = window.ids.filter((id) => readable.has(id));
    return { events: listed.slice(0, config.maxEvents), partial: listed.length > config.maxEvents || window.truncated };
  }

  /** The window's event ids, read as the system (the window is a fact about events, not about a user). */
  private async readWindow(nowMs: number, schema: SchemaOverview, database: Database): Promise<EventWindow> {
    const { config, ItemsService } = this.options;
    const rows = await new ItemsService(EVENTS_COLLECTION, { schema, knex: database, accountability: null }).readByQuery(
      { fields: ['id'], filter: windowFilter(nowMs, config), sort: WINDOW_SORT, limit: config.windowMax + 1 },
      // Internal bookkeeping, not a read by anyone: no items.query/items.read hooks, no activity.
      { emitEvents: false },
    );
    const ids = rows.map((row) => eventId(row.id));
    return { ids: ids.slice(0, config.windowMax), truncated: ids.length > config.windowMax };
  }

  /** Which of `ids` this accountability may read, as Directus answers it. */
  private async readableOf(
    ids: number[],
    accountability: Accountability,
    schema: SchemaOverview,
    database: Database,
  ): Promise<Set<number>> {
    const { ItemsService } = this.options;
    try {
      // Like the gateway's request, this read emits Directus's items.query/items.read events, so a
      // platform's own hooks on reading events apply to the claim as they apply to the request.
      const rows = await new ItemsService(EVENTS_COLLECTION, { schema, knex: database, accountability }).readByQuery({
        fields: ['id'],
        filter: { id: { _in: ids } },
        limit: ids.length,
      });
      return new Set(rows.map((row) => eventId(row.id)));
    } catch (err) {
      // No read permission on events (or their id) at all: Directus refuses the query. The user may read none.
      if (directusErrorCode(err) === 'FORBIDDEN') return new Set();
      throw err;
    }
  }

  /**
   * The accountability Directus builds for a request bearing this token (utils/get-accountability-for-token):
   * the user, its role and the role's ancestors (whose policies apply too), admin and app access as
   * Directus computed them for the payload a moment ago, and the IP the login or refresh came from
   * (policies may be restricted to networks).
   */
  private async accountabilityOf(
    user: string,
    payload: Record<string, unknown>,
    context: EventContext,
    database: Database,
  ): Promise<Accountability> {
    const role = typeof payload.role === 'string' ? payload.role : null;
    const request = context.accountability ?? {};
    return {
      user,
      role,
      roles: await rolesTree(role, database),
      admin: payload.admin_access === true,
      app: payload.app_access === true,
      ip: request.ip ?? null,
      ...(request.userAgent ? { userAgent: request.userAgent } : {}),
      ...(request.origin ? { origin: request.origin } : {}),
    };
  }
}

/**
 * A role and its ancestors, root first: the walk Directus does (@directus/utils fetchRolesTree), which
 * Directus does not hand to extensions. Directus refuses the login itself on a cycle, before this hook
 * runs; the visited check only keeps a concurrent edit from looping here.
 */
export async function rolesTree(role: string | null, database: Database): Promise<string[]> {
  const roles: string[] = [];
  let next = role;
  while (next && !roles.includes(next)) {
    const row = await database('directus_roles').select('id', 'parent').where('id', next).first();
    if (!row) break;
    roles.push(row.id);
    next = row.parent;
  }
  return roles.reverse();
}
