import { randomBytes } from 'node:crypto';
import { DirectusRest, query } from '../directus/rest.js';

/** Where and as whom to change access: a Directus URL and an administrator's static token. */
export interface DirectusAdmin {
  url: string;
  adminToken: string;
}

export interface DemoUser {
  id: string;
  email: string;
  password: string;
}

export type PermissionAction = 'create' | 'read' | 'update' | 'delete';

export interface PermissionSpec {
  collection: string;
  action: PermissionAction;
  /** Item rule (Directus filter); {} = every item. */
  permissions: Record<string, unknown>;
}

interface IdRow<T = string> {
  id: T;
}

/**
 * The item rules that let a policy read exactly these events, their entries and the devices entered
 * in them. No events means nothing (ids are never null).
 */
export function eventReadPermissions(eventIds: readonly number[]): PermissionSpec[] {
  const match = eventIds.length === 0 ? { _null: true } : eventIds.length === 1 ? { _eq: eventIds[0] } : { _in: [...eventIds] };
  return [
    { collection: 'events', action: 'read', permissions: { id: match } },
    { collection: 'entries', action: 'read', permissions: { event: match } },
    // devices have no field pointing at entries: follow the entries.device relation backwards.
    { collection: 'devices', action: 'read', permissions: { '$FOLLOW(entries,device)': { event: match } } },
  ];
}

export async function ensurePolicy(
  rest: DirectusRest,
  name: string,
  props: { app_access?: boolean; description?: string },
): Promise<string> {
  const found = await rest.get<IdRow[]>(`/policies${query({ filter: { name: { _eq: name } }, fields: ['id'], limit: 1 })}`);
  if (found[0]) return found[0].id;
  const created = await rest.post<IdRow>('/policies', {
    name,
    icon: 'badge',
    admin_access: false,
    app_access: props.app_access ?? false,
    description: props.description,
  });
  return created.id;
}

/** Creates or updates the policy's permission for each (collection, action); all fields. */
export async function ensurePermissions(rest: DirectusRest, policy: string, specs: readonly PermissionSpec[]): Promise<void> {
  for (const spec of specs) {
    const found = await rest.get<IdRow<number>[]>(
      `/permissions${query({ filter: { policy: { _eq: policy }, collection: { _eq: spec.collection }, action: { _eq: spec.action } }, fields: ['id'] })}`,
    );
    const body = { policy, collection: spec.collection, action: spec.action, permissions: spec.permissions, fields: ['*'] };
    const [first, ...duplicates] = found;
    if (first) await rest.patch(`/permissions/${first.id}`, body);
    else await rest.post('/permissions', body);
    for (const extra of duplicates) await rest.delete(`/permissions/${extra.id}`);
  }
}

export async function ensureRole(rest: DirectusRest, name: string, policies: readonly string[]): Promise<string> {
  const found = await rest.get<IdRow[]>(`/roles${query({ filter: { name: { _eq: name } }, fields: ['id'], limit: 1 })}`);
  const role = found[0]?.id ?? (await rest.post<IdRow>('/roles', { name, icon: 'group' })).id;
  for (const policy of policies) {
    const linked = await rest.get<IdRow[]>(
      `/access${query({ filter: { role: { _eq: role }, policy: { _eq: policy } }, fields: ['id'], limit: 1 })}`,
    );
    if (!linked[0]) await rest.post('/access', { role, policy });
  }
  return role;
}

/** Creates the user, or resets an existing one's password, role and status; optionally sets its static token. */
export async function ensureUser(
  rest: DirectusRest,
  user: { email: string; password: string; role: string | null; firstName?: string; token?: string },
): Promise<DemoUser> {
  const found = await rest.get<IdRow[]>(`/users${query({ filter: { email: { _eq: user.email } }, fields: ['id'], limit: 1 })}`);
  const body = {
    email: user.email,
    password: user.password,
    role: user.role,
    status: 'active',
    first_name: user.firstName ?? null,
    ...(user.token ? { token: user.token } : {}),
  };
  const id = found[0] ? (await rest.patch<IdRow>(`/users/${found[0].id}`, body)).id : (await rest.post<IdRow>('/users', body)).id;
  return { id, email: user.email, password: user.password };
}

/**
 * Lets the policy read exactly `eventIds` (their events, entries and devices) from the next request
 * on: [] revokes every event, [1] restores event 1. What the gateway's re-validation sees.
 */
export async function setEventAccess(admin: DirectusAdmin, policyId: string, eventIds: readonly number[]): Promise<void> {
  await ensurePermissions(new DirectusRest(admin.url, admin.adminToken), policyId, eventReadPermissions(eventIds));
}

/** Suspends (or re-activates) a user: Directus then rejects every request with that user's tokens. */
export async function setUserActive(admin: DirectusAdmin, userId: string, active: boolean): Promise<void> {
  await new DirectusRest(admin.url, admin.adminToken).patch(`/users/${userId}`, { status: active ? 'active' : 'suspended' });
}

/**
 * A fresh viewer of its own (user + policy) that may read `eventIds`: for tests that change a
 * viewer's access without disturbing the shared demo users.
 */
export async function createEventViewer(
  admin: DirectusAdmin,
  eventIds: readonly number[],
  options: { email?: string; password?: string } = {},
): Promise<{ user: DemoUser; policy: string }> {
  const rest = new DirectusRest(admin.url, admin.adminToken);
  const suffix = randomBytes(4).toString('hex');
  const policy = await ensurePolicy(rest, `viewer ${suffix}`, { description: `reads events ${eventIds.join(', ')}` });
  await ensurePermissions(rest, policy, eventReadPermissions(eventIds));
  const user = await ensureUser(rest, {
    email: options.email ?? `viewer-${suffix}@pitwall.example.com`,
    password: options.password ?? `viewer-${suffix}`,
    role: null,
  });
  await rest.post('/access', { user: user.id, policy });
  return { user, policy };
}
