import { webcrypto } from 'node:crypto';
import { eventsClaimOf } from '@pitwall/directus-events-claim';
import { errors, jwtVerify } from 'jose';
import { AuthenticationError } from './authentication-error.js';
import { DIRECTUS_ALGORITHM, DIRECTUS_ISSUER, sessionKeyOf, type Principal, type TokenVerifier } from './token-verifier.js';

/**
 * Verifies Directus access tokens locally with Directus's SECRET: HS256 only (alg none and every
 * other algorithm refused), issuer `directus`, `exp` required and enforced, `id` the user.
 */
export class LocalTokenVerifier implements TokenVerifier {
  private readonly key: Promise<webcrypto.CryptoKey>;

  constructor(secret: string) {
    // Imported once: handing jose raw bytes would import the key again on every verification.
    this.key = webcrypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  }

  async verify(token: string): Promise<Principal> {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, await this.key, {
        algorithms: [DIRECTUS_ALGORITHM],
        issuer: DIRECTUS_ISSUER,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new AuthenticationError('token expired', true, { cause: err });
      const reason = err instanceof errors.JOSEError ? err.code : 'unreadable token';
      throw new AuthenticationError(`token refused (${reason})`, false, { cause: err });
    }
    const userId = payload.id;
    if (typeof userId !== 'string' || userId.length === 0) throw new AuthenticationError('token has no user id');
    if (payload.exp === undefined) throw new AuthenticationError('token has no expiry');
    return { userId, expiresAtMs: payload.exp * 1000, sessionKey: sessionKeyOf(payload, token), eventsClaim: eventsClaimOf(payload) };
  }
}
