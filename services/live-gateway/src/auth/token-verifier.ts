/** Who a verified token belongs to and until when it is valid. */
export interface Principal {
  userId: string;
  /** Token expiry, ms since the epoch. */
  expiresAtMs: number;
}

/**
 * Verifies a Directus access token. Rejects with AuthenticationError when the token is not
 * acceptable, with DirectusUnavailableError when it cannot be checked right now.
 */
export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

export const DIRECTUS_ISSUER = 'directus';
/** Directus signs its access tokens with HS256 and nothing else. */
export const DIRECTUS_ALGORITHM = 'HS256';
