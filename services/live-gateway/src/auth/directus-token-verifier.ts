import { eventsClaimOf } from '@pitwall/directus-events-claim';
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import type { DirectusClient } from '../directus/directus-client.js';
import { DirectusUnavailableError } from '../directus/directus-unavailable-error.js';
import type { GatewayMetrics } from '../metrics.js';
import { SharedInterest, type Interest } from '../util/interest.js';
import { TtlCache } from '../util/ttl-cache.js';
import { AuthenticationError } from './authentication-error.js';
import { DIRECTUS_ALGORITHM, DIRECTUS_ISSUER, sessionKeyOf, tokenDigest, type Principal, type TokenVerifier } from './token-verifier.js';

export interface DirectusTokenVerifierOptions {
  /** How long a token Directus refused is refused again without asking. */
  refusedTtlMs: number;
  maxCachedTokens?: number;
}

/**
 * Verifies access tokens without the secret: asks Directus `/users/me` (through the Directus client's
 * limiter) once per token and caches the answer until the token expires; a refusal (401/403) is cached
 * for `refusedTtlMs`. The header and claims are checked first (HS256, issuer, not expired), so
 * obviously bad tokens never cost a call. Concurrent checks of one token share one call. Directus
 * being unavailable (429, 5xx, timeout) is never a refusal and never cached.
 */
export class DirectusTokenVerifier implements TokenVerifier {
  private readonly verified: TtlCache<Principal>;
  private readonly refused: TtlCache<string>;
  private readonly inFlight = new Map<string, { check: Promise<Principal>; interest: SharedInterest }>();

  constructor(
    private readonly directus: DirectusClient,
    private readonly metrics: GatewayMetrics,
    private readonly options: DirectusTokenVerifierOptions,
    private readonly now: () => number = Date.now,
  ) {
    const max = options.maxCachedTokens ?? 100_000;
    this.verified = new TtlCache(max, now);
    this.refused = new TtlCache(max, now);
  }

  verify(token: string, interest?: Interest): Promise<Principal> {
    const key = tokenDigest(token);
    const cached = this.verified.get(key);
    if (cached !== undefined) {
      this.metrics.cacheHits.inc({ cache: 'token' });
      return Promise.resolve(cached);
    }
    const refusal = this.refused.get(key);
    if (refusal !== undefined) {
      this.metrics.cacheHits.inc({ cache: 'refused_token' });
      return Promise.reject(new AuthenticationError(refusal));
    }
    const running = this.inFlight.get(key);
    if (running !== undefined) {
      running.interest.add(interest);
      return running.check;
    }
    this.metrics.cacheMisses.inc({ cache: 'token' });
    const shared = new SharedInterest(interest);
    const check = this.check(token, key, shared).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, { check, interest: shared });
    return check;
  }

  private async check(token: string, key: string, interest: Interest): Promise<Principal> {
    let claims: JWTPayload;
    try {
      const header = decodeProtectedHeader(token);
      if (header.alg !== DIRECTUS_ALGORITHM) throw new AuthenticationError(`token algorithm ${String(header.alg)} refused`);
      claims = decodeJwt(token);
    } catch (err) {
      if (err instanceof AuthenticationError) throw err;
      throw new AuthenticationError('token is not a JWT', false, { cause: err });
    }
    if (claims.iss !== DIRECTUS_ISSUER) throw new AuthenticationError('token issuer refused');
    if (claims.exp === undefined) throw new AuthenticationError('token has no expiry');
    const expiresAtMs = claims.exp * 1000;
    if (expiresAtMs <= this.now()) throw new AuthenticationError('token expired', true);

    // DirectusUnavailableError (429, 5xx, timeout, limiter) propagates: "cannot tell now".
    const res = await this.directus.get('verify', '/users/me?fields=id', token, interest);
    if (res.status === 401 || res.status === 403) {
      const reason = `Directus refused the token (HTTP ${res.status})`;
      this.refused.set(key, reason, this.now() + this.options.refusedTtlMs);
      throw new AuthenticationError(reason);
    }
    // A 404 or an answer without a user is not a refusal either: something between us and Directus is off.
    const userId = res.status === 200 ? readUserId(res.body) : undefined;
    if (userId === undefined) throw new DirectusUnavailableError(`Directus /users/me answered HTTP ${res.status} without a user`);
    if (typeof claims.id === 'string' && claims.id !== userId) throw new AuthenticationError('token user does not match Directus');
    const principal: Principal = { userId, expiresAtMs, sessionKey: sessionKeyOf(claims, token), eventsClaim: eventsClaimOf(claims) };
    this.verified.set(key, principal, expiresAtMs);
    return principal;
  }
}

function readUserId(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('data' in body)) return undefined;
  const data: unknown = body.data;
  if (typeof data !== 'object' || data === null || !('id' in data)) return undefined;
  return typeof data.id === 'string' && data.id.length > 0 ? data.id : undefined;
}
