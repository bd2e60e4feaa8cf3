import { DirectusRest } from './rest.js';

export interface DirectusSession {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires (ms since the epoch, from its `exp` claim). */
  expiresAt: number;
}

interface AuthReply {
  access_token: string;
  refresh_token: string;
  expires: number;
}

function expiryOf(token: string, fallbackMs: number): number {
  const payload = token.split('.')[1];
  if (payload) {
    try {
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown };
      if (typeof claims.exp === 'number') return claims.exp * 1000;
    } catch {
      // not a JWT we can read: fall back to the `expires` Directus sent
    }
  }
  return Date.now() + fallbackMs;
}

function toSession(reply: AuthReply): DirectusSession {
  return { accessToken: reply.access_token, refreshToken: reply.refresh_token, expiresAt: expiryOf(reply.access_token, reply.expires) };
}

/** Email/password login through Directus' REST API, as the live map does. */
export async function login(directusUrl: string, email: string, password: string): Promise<DirectusSession> {
  return toSession(await new DirectusRest(directusUrl).post<AuthReply>('/auth/login', { email, password, mode: 'json' }));
}

/** A new access token (and a new refresh token: Directus rotates them) for a refresh token. */
export async function refresh(directusUrl: string, refreshToken: string): Promise<DirectusSession> {
  return toSession(await new DirectusRest(directusUrl).post<AuthReply>('/auth/refresh', { refresh_token: refreshToken, mode: 'json' }));
}
