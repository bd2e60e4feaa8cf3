import type { DirectusClient } from '../directus/directus-client.js';
import { DirectusUnavailableError } from '../directus/directus-unavailable-error.js';
import type { GatewayMetrics } from '../metrics.js';
import type { ConcurrencyLimiter } from '../util/limiter.js';

export type AuthorizationResult = 'allowed' | 'forbidden' | 'not_found' | 'unavailable';

interface CachedResult {
  result: Exclude<AuthorizationResult, 'unavailable'>;
  expiresAtMs: number;
}

/**
 * May this user see this event? Asks Directus `GET /items/events/:id` with the user's own token,
 * so Directus's permission rules decide. Identical concurrent checks share one call; definitive
 * answers are cached per (user, event) for a short TTL; `unavailable` (timeout, 5xx, refused) is
 * never cached.
 */
export class EventAuthorizer {
  private readonly cache = new Map<string, CachedResult>();
  private readonly inFlight = new Map<string, Promise<AuthorizationResult>>();

  constructor(
    private readonly directus: DirectusClient,
    private readonly limiter: ConcurrencyLimiter,
    private readonly metrics: GatewayMetrics,
    private readonly ttlMs: number,
    private readonly maxCached = 200_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** `fresh` skips the cache (re-validation) but still joins a call already in flight. */
  check(userId: string, token: string, eventId: number, { fresh = false }: { fresh?: boolean } = {}): Promise<AuthorizationResult> {
    const key = `${userId}\u0000${eventId}`;
    if (!fresh) {
      const cached = this.cache.get(key);
      if (cached !== undefined && cached.expiresAtMs > this.now()) {
        this.metrics.cacheHits.inc({ cache: 'permission' });
        return Promise.resolve(cached.result);
      }
      this.metrics.cacheMisses.inc({ cache: 'permission' });
    }
    const running = this.inFlight.get(key);
    if (running !== undefined) return running;
    const call = this.ask(token, eventId)
      .then((result) => {
        if (result !== 'unavailable') this.remember(key, result);
        else this.cache.delete(key);
        return result;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, call);
    return call;
  }

  /** Forgets every cached answer (tests, and a changed permission model). */
  clear(): void {
    this.cache.clear();
  }

  private async ask(token: string, eventId: number): Promise<AuthorizationResult> {
    const started = performance.now();
    let result: AuthorizationResult;
    try {
      const res = await this.limiter.run(
        () => this.directus.get(`/items/events/${eventId}?fields=id`, token),
        () => new DirectusUnavailableError('too many authorization calls waiting'),
      );
      result = res.status === 200 ? 'allowed' : res.status === 404 ? 'not_found' : 'forbidden';
    } catch (err) {
      if (!(err instanceof DirectusUnavailableError)) throw err;
      result = 'unavailable';
    }
    this.metrics.authorizationCalls.inc({ result });
    this.metrics.authorizationDuration.observe({ result }, (performance.now() - started) / 1000);
    return result;
  }

  private remember(key: string, result: CachedResult['result']): void {
    if (this.ttlMs === 0) return;
    const now = this.now();
    if (this.cache.size >= this.maxCached) {
      for (const [k, v] of this.cache) if (v.expiresAtMs <= now) this.cache.delete(k);
      while (this.cache.size >= this.maxCached) {
        const oldest = this.cache.keys().next();
        if (oldest.done === true) break;
        this.cache.delete(oldest.value);
      }
    }
    this.cache.delete(key);
    this.cache.set(key, { result, expiresAtMs: now + this.ttlMs });
  }
}
