import { DirectusAuthError } from './directus-auth-error.js';

// Viewer sessions at Directus over its REST API (JSON mode): what the live map does to get and renew
// its access token. Kept free of other workspace packages so viewer worker processes stay small.

export interface ViewerSession {
  accessToken: string;
  refreshToken: string;
  /** Expiry of the access token, ms since the epoch (from Directus' `expires`, a lifetime in ms). */
  expiresAt: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function post(url: string, body: unknown, what: string): Promise<ViewerSession> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const data = isRecord(json) ? json.data : undefined;
  if (!res.ok || !isRecord(data) || typeof data.access_token !== 'string' || typeof data.refresh_token !== 'string') {
    throw new DirectusAuthError(`${what} answered ${res.status}: ${text.slice(0, 200)}`);
  }
  const lifetimeMs = typeof data.expires === 'number' ? data.expires : 0;
  return { accessToken: data.access_token, refreshToken: data.refresh_token, expiresAt: Date.now() + lifetimeMs };
}

export function loginViewer(directusUrl: string, email: string, password: string): Promise<ViewerSession> {
  return post(`${directusUrl}/auth/login`, { email, password, mode: 'json' }, 'Directus /auth/login');
}

/** A new access token and a new refresh token: Directus rotates them, the old refresh token is spent. */
export function refreshViewer(directusUrl: string, refreshToken: string): Promise<ViewerSession> {
  return post(`${directusUrl}/auth/refresh`, { refresh_token: refreshToken, mode: 'json' }, 'Directus /auth/refresh');
}
