import type { DirectusClient } from '../directus/directus-client.js';
import { DirectusUnavailableError } from '../directus/directus-unavailable-error.js';
import type { GatewayMetrics } from '../metrics.js';
import { SharedInterest } from '../util/interest.js';
import { TtlCache } from '../util/ttl-cache.js';
import type { AuthorizationDecision, AuthorizationRequest, AuthorizationSource } from './authorization.js';

type Definitive = 'allowed' | 'forbidden' | 'not_found';

/**
 * May this principal see this event? Asks Directus `GET /items/events/:id` with the user's own token,
 * so Directus's permission rules decide: 200 allowed, 401/403 forbidden, 404 not_found; anything else
 * (429, 5xx, timeouts: see DirectusClient) is `unavailable`, never cached. Identical concurrent checks
 * share one call; definitive answers are cached for a short TTL per (login session, event): a session
 * never uses what another session of the same user was told (a logged-out one would otherwise ride on
 * a live one's `allowed`).
 */
export class DirectusAuthorizer implements AuthorizationSource {
  readonly name = 'directus';
  private readonly cache: TtlCache<Definitive>;
  private readonly inFlight = new Map<string, { call: Promise<AuthorizationDecision>; interest: SharedInterest }>();

  constructor(
    private readonly directus: DirectusClient,
    private readonly metrics: GatewayMetrics,
    private readonly ttlMs: number,
    maxCached = 200_000,
    private readonly now: () => number = Date.now,
  ) {
    this.cache = new TtlCache(maxCached, now);
  }

  /** `fresh` skips the cache (re-validation) but still joins a call already in flight. */
  decide({ principal, token, eventId, fresh, interest }: AuthorizationRequest): Promise<AuthorizationDecision> {
    const key = `${principal.sessionKey}\u0000${eventId}`;
    if (!fresh) {
      const cached = this.cache.get(key);
      if (cached !== undefined) {
        this.metrics.cacheHits.inc({ cache: 'permission' });
        return Promise.resolve({ result: cached });
      }
      this.metrics.cacheMisses.inc({ cache: 'permission' });
    }
    const running = this.inFlight.get(key);
    if (running !== undefined) {
      running.interest.add(interest);
      return running.call;
    }
    // Dropped while queued once every connection that joined it has closed.
    const shared = new SharedInterest(interest);
    const call = this.ask(token, eventId, shared)
      .then((decision) => {
        if (decision.result === 'unavailable') this.cache.delete(key);
        else if (this.ttlMs > 0) this.cache.set(key, decision.result, this.now() + this.ttlMs);
        return decision;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, { call, interest: shared });
    return call;
  }

  /** Forgets every cached answer (tests, and a changed permission model). */
  clear(): void {
    this.cache.clear();
  }

  private async ask(token: string, eventId: number, interest: SharedInterest): Promise<AuthorizationDecision> {
    const started = performance.now();
    let decision: AuthorizationDecision;
    try {
      const res = await this.directus.get('authorize', `/items/events/${eventId}?fields=id`, token, interest);
      decision = { result: res.status === 200 ? 'allowed' : res.status === 404 ? 'not_found' : 'forbidden' };
    } catch (err) {
      if (!(err instanceof DirectusUnavailableError)) throw err;
      decision = err.retryAfterMs === undefined ? { result: 'unavailable' } : { result: 'unavailable', retryAfterMs: err.retryAfterMs };
    }
    this.metrics.authorizationCalls.inc({ result: decision.result });
    this.metrics.authorizationDuration.observe({ result: decision.result }, (performance.now() - started) / 1000);
    return decision;
  }
}
