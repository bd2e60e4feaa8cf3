import type { EventsClaimConfig } from './config.js';
import type { Filter } from './directus.js';

// The window: the events a token may usefully list, the same for every user. An event is in it when
//   starts_at <= now + lead                                  (live, or starting within `lead`)
//   and ends_at >= now - grace                               (not over, or over less than `grace` ago)
//       or, with no ends_at, starts_at >= now - grace - openEnded  (counted as lasting `openEnded`)
// An event without starts_at is never in it. Newest start first, so a capped list keeps the events
// that are starting or just started.

export const EVENTS_COLLECTION = 'events';

export function windowFilter(nowMs: number, config: Pick<EventsClaimConfig, 'leadMs' | 'graceMs' | 'openEndedMs'>): Filter {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    _and: [
      { starts_at: { _lte: iso(nowMs + config.leadMs) } },
      {
        _or: [
          { ends_at: { _gte: iso(nowMs - config.graceMs) } },
          { _and: [{ ends_at: { _null: true } }, { starts_at: { _gte: iso(nowMs - config.graceMs - config.openEndedMs) } }] },
        ],
      },
    ],
  };
}

export const WINDOW_SORT = ['-starts_at', '-id'];

export interface EventWindow {
  /** Event ids in the window, newest start first, at most windowMax. */
  ids: number[];
  /** The window held more than windowMax events: claims built from it are partial. */
  truncated: boolean;
}

/** An event id as the claim carries it (the contract's integer ids); anything else is an error. */
export function eventId(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' && /^\d{1,15}$/.test(value)) return Number(value);
  throw new TypeError(`event id ${JSON.stringify(value)} is not an integer`);
}

/**
 * The window's ids, fetched at most once per `ttlMs` however many logins ask at once (a race start's
 * thousands of logins share one query), and fetched again after any change to events made through
 * this Directus (invalidate()). A failed fetch is not kept: the next login tries again.
 */
export class WindowCache {
  private current: { window: EventWindow; atMs: number } | undefined;
  private pending: Promise<EventWindow> | undefined;
  /** Bumped by invalidate(): a fetch that started before a change must not be kept after it. */
  private generation = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The cached window, or the one `fetch` reads (shared with every caller while it runs). */
  get(fetch: (nowMs: number) => Promise<EventWindow>): Promise<EventWindow> {
    const nowMs = this.now();
    // With no cache every login reads the window itself, at its own now.
    if (this.ttlMs <= 0) return fetch(nowMs);
    if (this.current && nowMs - this.current.atMs < this.ttlMs) return Promise.resolve(this.current.window);
    if (this.pending) return this.pending;
    const generation = this.generation;
    const pending = fetch(nowMs).then(
      (window) => {
        if (generation === this.generation) {
          this.current = { window, atMs: nowMs };
          this.pending = undefined;
        }
        return window;
      },
      (err: unknown) => {
        if (generation === this.generation) this.pending = undefined;
        throw err;
      },
    );
    this.pending = pending;
    return pending;
  }

  /** Events changed: the next login reads the window again. */
  invalidate(): void {
    this.generation++;
    this.current = undefined;
    this.pending = undefined;
  }
}
