import { SharedArray } from 'k6/data';
import http from 'k6/http';
import { envNumber, envOptional } from './env.ts';

// A viewer's Directus session: from a pool of pre-issued tokens (TOKENS_FILE, TOKENS) or a real login
// at Directus (/auth/login with VIEWER_EMAIL / VIEWER_PASSWORD), refreshed at /auth/refresh.

export interface ViewerSession {
  accessToken: string;
  /** Absent for a pool of bare access tokens: such sessions cannot be refreshed. */
  refreshToken: string | undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sessionOf(value: unknown): ViewerSession | undefined {
  if (typeof value === 'string' && value.length > 0) return { accessToken: value, refreshToken: undefined };
  if (!isRecord(value) || typeof value.access_token !== 'string') return undefined;
  return { accessToken: value.access_token, refreshToken: typeof value.refresh_token === 'string' ? value.refresh_token : undefined };
}

function parsePool(text: string): ViewerSession[] {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value)) throw new Error('TOKENS_FILE must hold a JSON array of tokens or {access_token, refresh_token}');
  return value.map((item, i) => {
    const session = sessionOf(item);
    if (!session) throw new Error(`TOKENS_FILE entry ${i} is neither a token nor {access_token, refresh_token}`);
    return session;
  });
}

// Shared between VUs (one copy, not one per VU); open() is only allowed here, in the init context.
const pool = new SharedArray<ViewerSession>('viewer tokens', () => {
  const file = envOptional('TOKENS_FILE');
  if (file) return parsePool(open(file));
  const tokens = envOptional('TOKENS');
  return tokens ? tokens.split(',').flatMap((t) => (t.trim() ? [{ accessToken: t.trim(), refreshToken: undefined }] : [])) : [];
});

/** The e-mail of the viewer user for VU `vu`: VIEWER_EMAIL with `{n}` replaced by 1..VIEWER_USERS. */
export function viewerEmail(vu: number): string {
  const template = envOptional('VIEWER_EMAIL');
  if (!template) throw new Error('set TOKENS_FILE or TOKENS (a token pool), or VIEWER_EMAIL and VIEWER_PASSWORD (log in at DIRECTUS_URL)');
  const users = Math.max(1, Math.floor(envNumber('VIEWER_USERS', 1)));
  return template.replace('{n}', String(((vu - 1) % users) + 1));
}

function sessionFromReply(status: number, body: string | null, what: string): ViewerSession {
  let data: unknown;
  try {
    data = body ? (JSON.parse(body) as unknown) : undefined;
  } catch {
    data = undefined;
  }
  const session = isRecord(data) ? sessionOf(data.data) : undefined;
  if (status !== 200 || !session) throw new Error(`${what} answered ${status}: ${String(body).slice(0, 200)}`);
  return session;
}

function bodyText(body: unknown): string | null {
  return typeof body === 'string' ? body : null;
}

/** Logs in at Directus as the viewer user of this VU (synchronous: before the VU connects). */
export function login(directusUrl: string, vu: number): ViewerSession {
  const password = envOptional('VIEWER_PASSWORD');
  if (!password) throw new Error('VIEWER_PASSWORD is required with VIEWER_EMAIL');
  const res = http.post(`${directusUrl}/auth/login`, JSON.stringify({ email: viewerEmail(vu), password, mode: 'json' }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'directus_login' },
  });
  return sessionFromReply(res.status, bodyText(res.body), 'Directus /auth/login');
}

/** The session of VU `vu`: from the pool when one is given (round-robin), else a fresh login. */
export function acquireSession(directusUrl: string | undefined, vu: number): ViewerSession {
  if (pool.length > 0) {
    const pooled = pool[(vu - 1) % pool.length];
    if (pooled) return pooled;
  }
  if (!directusUrl) throw new Error('DIRECTUS_URL is required to log viewers in (or give TOKENS_FILE / TOKENS)');
  return login(directusUrl, vu);
}

/** A new session for a refresh token (Directus rotates it: the old one is spent). */
export async function refreshSession(directusUrl: string, session: ViewerSession): Promise<ViewerSession> {
  if (!session.refreshToken) throw new Error('this session has no refresh token (a bare token from the pool)');
  const res = await http.asyncRequest(
    'POST',
    `${directusUrl}/auth/refresh`,
    JSON.stringify({ refresh_token: session.refreshToken, mode: 'json' }),
    {
      headers: { 'Content-Type': 'application/json' },
      tags: { name: 'directus_refresh' },
    },
  );
  return sessionFromReply(res.status, bodyText(res.body), 'Directus /auth/refresh');
}
