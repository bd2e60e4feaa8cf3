import { loginViewer, type ViewerSession } from './directus-auth.js';
import { DirectusAuthError } from './directus-auth-error.js';

// Many viewer accounts on a Directus, for load runs: one role carrying a policy that may read the
// events (e.g. the seed's "viewer of every event"), users created in batches, logged in concurrently.

export interface ViewerAccount {
  email: string;
  password: string;
}

async function adminRequest<T>(directusUrl: string, adminToken: string, method: string, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${directusUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new DirectusAuthError(`Directus ${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  const parsed = text ? (JSON.parse(text) as { data?: T }) : {};
  return parsed.data as T;
}

/**
 * Creates `count` active users with one shared role that carries `policy`. Emails are
 * `<prefix>-<i>@load.pitwall.example.com`; every account has `password`.
 */
export async function createViewerAccounts(
  directusUrl: string,
  adminToken: string,
  { count, policy, prefix, password, batch = 250 }: { count: number; policy: string; prefix: string; password: string; batch?: number },
): Promise<ViewerAccount[]> {
  const role = await adminRequest<{ id: string }>(directusUrl, adminToken, 'POST', '/roles', { name: `${prefix} viewers`, icon: 'group' });
  await adminRequest(directusUrl, adminToken, 'POST', '/access', { role: role.id, policy });
  const accounts = Array.from({ length: count }, (_, i): ViewerAccount => ({ email: `${prefix}-${i}@load.pitwall.example.com`, password }));
  for (let i = 0; i < accounts.length; i += batch) {
    const users = accounts.slice(i, i + batch).map((a) => ({ email: a.email, password: a.password, role: role.id, status: 'active' }));
    await adminRequest(directusUrl, adminToken, 'POST', '/users', users);
  }
  return accounts;
}

/** Logs every account in (at most `concurrency` logins at once): one Directus session per account. */
export async function loginAccounts(
  directusUrl: string,
  accounts: readonly ViewerAccount[],
  { concurrency = 8, onProgress }: { concurrency?: number; onProgress?: (done: number) => void } = {},
): Promise<ViewerSession[]> {
  const sessions: ViewerSession[] = new Array<ViewerSession>(accounts.length);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < accounts.length; i = next++) {
      const account = accounts[i];
      if (!account) continue;
      sessions[i] = await loginViewer(directusUrl, account.email, account.password);
      if (++done % 500 === 0) onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return sessions;
}
