import { createHash } from 'node:crypto';
import type { EventsClaim } from '@pitwall/directus-events-claim';
import type { Interest } from '../util/interest.js';

/** Who a verified token belongs to, until when, and which login session it is part of. */
export interface Principal {
  userId: string;
  /** Token expiry, ms since the epoch. */
  expiresAtMs: number;
  /**
   * The login session the token belongs to: Directus's `session` claim (a logout or a revocation ends
   * exactly that session), or a hash of the token when it has none. Cached answers are keyed by it, so
   * one session never rides on what another session of the same user was told.
   */
  sessionKey: string;
  /**
   * The token's `pitwall_events` claim (undefined: none, or malformed), read once at verification: a
   * session keeps this for as long as it is open, not the whole payload. Only from a token whose
   * signature was checked (locally, or by Directus answering /users/me with it).
   */
  eventsClaim: Readonly<EventsClaim> | undefined;
}

/**
 * Verifies a Directus access token. Rejects with AuthenticationError when the token is not
 * acceptable, with DirectusUnavailableError when it cannot be checked right now.
 */
export interface TokenVerifier {
  /** `interest`: who waits for the answer; a Directus call still queued when it has gone is dropped. */
  verify(token: string, interest?: Interest): Promise<Principal>;
}

export const DIRECTUS_ISSUER = 'directus';
/** Directus signs its access tokens with HS256 and nothing else. */
export const DIRECTUS_ALGORITHM = 'HS256';
/** An HS256 key shorter than the hash output weakens it (RFC 7518 3.2): the gateway refuses such a secret. */
export const MIN_SECRET_BYTES = 32;

/** A fixed-size key for a token (caches never hold the token itself). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** The session key of a token with these claims (see Principal.sessionKey). */
export function sessionKeyOf(claims: Readonly<Record<string, unknown>>, token: string): string {
  const session = claims.session;
  return typeof session === 'string' && session.length > 0 ? `s:${session}` : `t:${tokenDigest(token)}`;
}
