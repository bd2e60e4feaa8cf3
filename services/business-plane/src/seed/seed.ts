import { randomBytes } from 'node:crypto';
import { login } from '../directus/auth.js';
import { DirectusRest, query } from '../directus/rest.js';
import type { DirectusInstance } from '../directus/server.js';
import {
  ensurePermissions,
  ensurePolicy,
  ensureRole,
  ensureUser,
  eventReadPermissions,
  type DemoUser,
  type PermissionSpec,
} from './access.js';

/** IMEI of device `index` of the simulated race (the same numbering as the device simulator). */
export function seedDeviceImei(index: number): string {
  return String(356307040000000 + index);
}

export interface SeedPlan {
  /** Number of events (ids 1..n on a fresh database). Default 3. */
  events?: number;
  /** Devices entered per event: event 1 gets devices 0..k-1, event 2 k..2k-1, ... Default 4. */
  devicesPerEvent?: number;
  /** Password of every demo user. Default 'pitwall-demo'. */
  password?: string;
  /** Static token of the gateway's service user. Default: random. */
  serviceToken?: string;
  /** Static token set on the administrator. Default: random. */
  adminToken?: string;
}

export interface SeededEvent {
  id: number;
  name: string;
  status: string;
}

export interface SeededDevice {
  id: number;
  imei: string;
  name: string;
}

export interface SeededEntry {
  id: number;
  event: number;
  device: number;
  label: string;
}

/** What the seed made; plain JSON (tests receive it through vitest's provide/inject). */
export interface Seeded {
  /** Static token of the service user (reads events, entries, devices): the gateway's DIRECTUS_SERVICE_TOKEN. */
  serviceToken: string;
  /** Static token of the administrator (for changing access in tests). */
  adminToken: string;
  events: SeededEvent[];
  devices: SeededDevice[];
  entries: SeededEntry[];
  users: {
    /** May read the first event only. */
    viewerOne: DemoUser;
    /** May read every event. */
    viewerAll: DemoUser;
    /** Reads and writes events, devices and entries. */
    operator: DemoUser;
    /** The service user behind serviceToken. */
    service: DemoUser;
  };
  policies: { viewerOne: string; viewerAll: string; operator: string; service: string };
}

export const DEMO_EMAILS = {
  viewerOne: 'viewer-one@pitwall.example.com',
  viewerAll: 'viewer-all@pitwall.example.com',
  operator: 'operator@pitwall.example.com',
  service: 'live-gateway@pitwall.example.com',
} as const;

const EVENT_NAMES = ['Coastal Rally', 'Forest Sprint', 'Night Stage', 'Mountain Classic', 'Desert Raid', 'Harbour Circuit'];
const CREWS = ['Lindqvist', 'Moreau', 'Kowalski', 'Tanaka', 'Okafor', 'Rossi', 'Haddad', 'Novak', 'Silva', 'Jensen', 'Ferreira', 'Ivanova'];

const BUSINESS_COLLECTIONS = ['events', 'devices', 'entries'] as const;

function allOf(actions: PermissionSpec['action'][]): PermissionSpec[] {
  return BUSINESS_COLLECTIONS.flatMap((collection) => actions.map((action) => ({ collection, action, permissions: {} })));
}

/**
 * Seeds a started Directus over REST: policies and roles (viewer of the first event only, viewer of
 * every event, operator, service), the demo users, the service user's static token, and events,
 * devices and entries matching the simulator's IMEIs. Safe to run again (finds by name, email,
 * IMEI); passwords and tokens are reset to the plan's.
 */
export async function seedDirectus(instance: DirectusInstance, plan: SeedPlan = {}): Promise<Seeded> {
  const eventCount = plan.events ?? 3;
  const perEvent = plan.devicesPerEvent ?? 4;
  const password = plan.password ?? 'pitwall-demo';
  const serviceToken = plan.serviceToken ?? randomBytes(24).toString('base64url');
  const adminToken = plan.adminToken ?? randomBytes(24).toString('base64url');
  if (eventCount < 1) throw new Error('a seed needs at least one event');

  const session = await login(instance.url, instance.adminEmail, instance.adminPassword);
  await new DirectusRest(instance.url, session.accessToken).patch('/users/me', { token: adminToken });
  const rest = new DirectusRest(instance.url, adminToken);

  const events: SeededEvent[] = [];
  const now = Date.now();
  for (let i = 0; i < eventCount; i++) {
    const name = EVENT_NAMES[i] ?? `Event ${i + 1}`;
    const status = 'live';
    const fields = {
      name,
      status,
      starts_at: new Date(now - 3_600_000).toISOString(),
      ends_at: new Date(now + 6 * 3_600_000).toISOString(),
    };
    const found = await rest.get<{ id: number }[]>(`/items/events${query({ filter: { name: { _eq: name } }, fields: ['id'], limit: 1 })}`);
    const id = found[0]
      ? (await rest.patch<{ id: number }>(`/items/events/${found[0].id}`, fields)).id
      : (await rest.post<{ id: number }>('/items/events', fields)).id;
    events.push({ id, name, status });
  }

  const devices: SeededDevice[] = [];
  const wanted = Array.from({ length: eventCount * perEvent }, (_, index) => ({
    imei: seedDeviceImei(index),
    name: `Tracker ${index + 1}`,
  }));
  const existing = await rest.get<{ id: number; imei: string }[]>(
    `/items/devices${query({ filter: { imei: { _in: wanted.map((d) => d.imei) } }, fields: ['id', 'imei'], limit: -1 })}`,
  );
  const missing = wanted.filter((d) => !existing.some((e) => e.imei === d.imei));
  const created = missing.length > 0 ? await rest.post<{ id: number; imei: string }[]>('/items/devices', missing) : [];
  for (const device of wanted) {
    const row = existing.find((e) => e.imei === device.imei) ?? created.find((e) => e.imei === device.imei);
    if (!row) throw new Error(`device ${device.imei} was neither found nor created`);
    devices.push({ id: row.id, imei: device.imei, name: device.name });
  }

  const entries: SeededEntry[] = [];
  for (const [e, event] of events.entries()) {
    const mine = devices.slice(e * perEvent, (e + 1) * perEvent);
    const present = await rest.get<SeededEntry[]>(
      `/items/entries${query({ filter: { event: { _eq: event.id } }, fields: ['id', 'event', 'device', 'label'], limit: -1 })}`,
    );
    const toCreate = mine
      .map((device, k) => ({
        event: event.id,
        device: device.id,
        label: `#${k + 1} ${CREWS[(e * perEvent + k) % CREWS.length] ?? 'Crew'}`,
      }))
      .filter((entry) => !present.some((p) => p.device === entry.device));
    const made = toCreate.length > 0 ? await rest.post<SeededEntry[]>('/items/entries', toCreate) : [];
    for (const device of mine) {
      const row = present.find((p) => p.device === device.id) ?? made.find((p) => p.device === device.id);
      if (row) entries.push({ id: row.id, event: row.event, device: row.device, label: row.label });
    }
  }

  const firstEvent = events[0];
  if (!firstEvent) throw new Error('no event was seeded');
  const policies = {
    viewerOne: await ensurePolicy(rest, 'Viewer of the first event', { description: `reads event ${firstEvent.id} only` }),
    viewerAll: await ensurePolicy(rest, 'Viewer of every event', { description: 'reads every event' }),
    operator: await ensurePolicy(rest, 'Race operator', { app_access: true, description: 'reads and writes events, devices and entries' }),
    service: await ensurePolicy(rest, 'Live gateway service', { description: 'reads events and their entries and devices' }),
  };
  await ensurePermissions(rest, policies.viewerOne, eventReadPermissions([firstEvent.id]));
  await ensurePermissions(rest, policies.viewerAll, allOf(['read']));
  await ensurePermissions(rest, policies.operator, allOf(['create', 'read', 'update', 'delete']));
  await ensurePermissions(rest, policies.service, allOf(['read']));

  const roles = {
    viewerOne: await ensureRole(rest, 'Viewer (first event)', [policies.viewerOne]),
    viewerAll: await ensureRole(rest, 'Viewer (every event)', [policies.viewerAll]),
    operator: await ensureRole(rest, 'Operator', [policies.operator]),
    service: await ensureRole(rest, 'Service', [policies.service]),
  };
  const users = {
    viewerOne: await ensureUser(rest, { email: DEMO_EMAILS.viewerOne, password, role: roles.viewerOne, firstName: 'Viewer One' }),
    viewerAll: await ensureUser(rest, { email: DEMO_EMAILS.viewerAll, password, role: roles.viewerAll, firstName: 'Viewer All' }),
    operator: await ensureUser(rest, { email: DEMO_EMAILS.operator, password, role: roles.operator, firstName: 'Operator' }),
    service: await ensureUser(rest, {
      email: DEMO_EMAILS.service,
      password: randomBytes(18).toString('base64url'),
      role: roles.service,
      firstName: 'Live gateway',
      token: serviceToken,
    }),
  };
  return { serviceToken, adminToken, events, devices, entries, users, policies };
}
