import { decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import type { GatewayMetrics } from '../metrics.js';
import type { DirectusClient } from '../directus/directus-client.js';
import { AuthenticationError } from './authentication-error.js';
import { DIRECTUS_ALGORITHM, DIRECTUS_ISSUER, type Principal, type TokenVerifier } from './token-verifier.js';

/**
 * Verifies access tokens without the secret: asks Directus `/users/me` once per token and caches
 * the answer until the token expires. The header and claims are checked first (HS256, issuer,
 * not expired), so obviously bad tokens never cost a call. Concurrent checks of one token share
 * one call.
 */
export class DirectusTokenVerifier implements TokenVerifier {
  private readonly verified = new Map<string, Principal>();
  private readonly inFlight = new Map<string, Promise<Principal>>();

  constructor(
    private readonly directus: DirectusClient,
    private readonly metrics: GatewayMetrics,
    private readonly maxCachedTokens = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  verify(token: string): Promise<Principal> {
    const cached = this.verified.get(token);
    if (cached !== undefined) {
      if (cached.expiresAtMs > this.now()) {
        this.metrics.cacheHits.inc({ cache: 'token' });
        return Promise.resolve(cached);
      }
      this.verified.delete(token);
    }
    const running = this.inFlight.get(token);
    if (running !== undefined) return running;
    this.metrics.cacheMisses.inc({ cache: 'token' });
    const check = this.check(token).finally(() => this.inFlight.delete(token));
    this.inFlight.set(token, check);
    return check;
  }

  private async check(token: string): Promise<Principal> {
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

    const res = await this.directus.get('/users/me?fields=id', token);
    if (res.status === 401 || res.status === 403) throw new AuthenticationError('Directus refused the token');
    const userId = readUserId(res.body);
    if (res.status !== 200 || userId === undefined) throw new AuthenticationError(`Directus /users/me answered ${res.status}`);
    if (typeof claims.id === 'string' && claims.id !== userId) throw new AuthenticationError('token user does not match Directus');
    const principal = { userId, expiresAtMs };
    this.remember(token, principal);
    return principal;
  }

  private remember(token: string, principal: Principal): void {
    if (this.verified.size >= this.maxCachedTokens) {
      const now = this.now();
      for (const [key, value] of this.verified) if (value.expiresAtMs <= now) this.verified.delete(key);
      // Still full: drop the oldest (Map keeps insertion order).
      while (this.verified.size >= this.maxCachedTokens) {
        const oldest = this.verified.keys().next();
        if (oldest.done === true) break;
        this.verified.delete(oldest.value);
      }
    }
    this.verified.set(token, principal);
  }
}

function readUserId(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('data' in body)) return undefined;
  const data: unknown = body.data;
  if (typeof data !== 'object' || data === null || !('id' in data)) return undefined;
  return typeof data.id === 'string' && data.id.length > 0 ? data.id : undefined;
}
