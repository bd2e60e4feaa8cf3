import type { DirectusClient } from '../directus/directus-client.js';
import { DirectusUnavailableError } from '../directus/directus-unavailable-error.js';
import type { GatewayMetrics } from '../metrics.js';
import { positionPrefix } from '../protocol/position-json.js';

/** One device shown in one event, with the start of its position JSON already built. */
export interface EventDevice {
  deviceId: string;
  label: string;
  /** `{"device_id":..,"label":..,` */
  prefix: string;
}

/** Where a device's positions go: each watched event it is entered in. */
export interface DeviceRoute {
  eventId: number;
  prefix: string;
}

interface EventRecord {
  devices: EventDevice[];
  fetchedAtMs: number;
  watched: boolean;
}

/**
 * Which devices each event shows: the event's entries (device IMEI and label), read from Directus
 * with the service token, cached per event and re-read while the event is watched. Keeps the
 * hot-path index device -> watched events, so routing a position is one map lookup.
 */
export class EventDirectory {
  private readonly events = new Map<number, EventRecord>();
  private readonly inFlight = new Map<number, Promise<EventDevice[]>>();
  private readonly routes = new Map<string, DeviceRoute[]>();

  constructor(
    private readonly directus: DirectusClient,
    private readonly serviceToken: string,
    private readonly metrics: GatewayMetrics,
    private readonly refreshIntervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Devices of an event: cached if read within the refresh interval, else read now. When Directus
   * cannot answer, a stale copy is used if there is one; otherwise DirectusUnavailableError.
   */
  async load(eventId: number): Promise<EventDevice[]> {
    const record = this.events.get(eventId);
    if (record !== undefined && this.now() - record.fetchedAtMs < this.refreshIntervalMs) {
      this.metrics.cacheHits.inc({ cache: 'entries' });
      return record.devices;
    }
    this.metrics.cacheMisses.inc({ cache: 'entries' });
    try {
      return await this.fetch(eventId);
    } catch (err) {
      if (record !== undefined && err instanceof DirectusUnavailableError) return record.devices;
      throw err;
    }
  }

  /** Devices of an event as last read, if it was. */
  devicesOf(eventId: number): readonly EventDevice[] | undefined {
    return this.events.get(eventId)?.devices;
  }

  /** Hot path: the watched events a device's positions go to. */
  routesOf(deviceId: string): readonly DeviceRoute[] | undefined {
    return this.routes.get(deviceId);
  }

  /**
   * Puts an event's devices into (or takes them out of) the routing index. `devices` (what load()
   * returned) is used when the event was forgotten in between.
   */
  setWatched(eventId: number, watched: boolean, devices?: EventDevice[]): void {
    let record = this.events.get(eventId);
    if (record === undefined && watched && devices !== undefined) {
      record = { devices, fetchedAtMs: this.now(), watched: false };
      this.events.set(eventId, record);
    }
    if (record === undefined || record.watched === watched) return;
    record.watched = watched;
    if (watched) this.index(eventId, record.devices);
    else this.unindex(eventId, record.devices);
  }

  /** Re-reads the entries of every watched event and forgets unwatched ones once stale. */
  async refresh(): Promise<void> {
    const now = this.now();
    const watched: number[] = [];
    for (const [eventId, record] of this.events) {
      if (record.watched) watched.push(eventId);
      else if (now - record.fetchedAtMs >= this.refreshIntervalMs) this.events.delete(eventId);
    }
    await Promise.all(watched.map((eventId) => this.fetch(eventId).catch(() => undefined)));
  }

  private fetch(eventId: number): Promise<EventDevice[]> {
    const running = this.inFlight.get(eventId);
    if (running !== undefined) return running;
    const call = this.read(eventId).finally(() => this.inFlight.delete(eventId));
    this.inFlight.set(eventId, call);
    return call;
  }

  private async read(eventId: number): Promise<EventDevice[]> {
    let devices: EventDevice[];
    try {
      const res = await this.directus.get(
        `/items/entries?filter[event][_eq]=${eventId}&fields=label,device.imei&limit=-1`,
        this.serviceToken,
      );
      if (res.status !== 200)
        throw new DirectusUnavailableError(`Directus refused to list the entries of event ${eventId} (HTTP ${res.status})`);
      devices = parseEntries(res.body);
    } catch (err) {
      this.metrics.entriesFetches.inc({ result: 'error' });
      throw err;
    }
    this.metrics.entriesFetches.inc({ result: 'ok' });
    const previous = this.events.get(eventId);
    const watched = previous?.watched ?? false;
    if (watched && previous !== undefined) this.unindex(eventId, previous.devices);
    this.events.set(eventId, { devices, fetchedAtMs: this.now(), watched });
    if (watched) this.index(eventId, devices);
    return devices;
  }

  private index(eventId: number, devices: readonly EventDevice[]): void {
    for (const device of devices) {
      const list = this.routes.get(device.deviceId);
      const route = { eventId, prefix: device.prefix };
      if (list === undefined) this.routes.set(device.deviceId, [route]);
      else list.push(route);
    }
  }

  private unindex(eventId: number, devices: readonly EventDevice[]): void {
    for (const device of devices) {
      const list = this.routes.get(device.deviceId);
      if (list === undefined) continue;
      const kept = list.filter((route) => route.eventId !== eventId);
      if (kept.length === 0) this.routes.delete(device.deviceId);
      else this.routes.set(device.deviceId, kept);
    }
  }
}

/** `{data: [{label, device: {imei}}]}` -> devices; entries without a device are skipped. */
export function parseEntries(body: unknown): EventDevice[] {
  const data = typeof body === 'object' && body !== null && 'data' in body ? body.data : undefined;
  if (!Array.isArray(data)) throw new DirectusUnavailableError('Directus entries answer has no data list');
  const devices: EventDevice[] = [];
  const seen = new Set<string>();
  for (const entry of data as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const device = 'device' in entry ? entry.device : undefined;
    const imei = typeof device === 'object' && device !== null && 'imei' in device ? device.imei : undefined;
    if (typeof imei !== 'string' || imei.length === 0 || seen.has(imei)) continue;
    const rawLabel = 'label' in entry ? entry.label : undefined;
    const label = typeof rawLabel === 'string' ? rawLabel : typeof rawLabel === 'number' ? String(rawLabel) : '';
    seen.add(imei);
    devices.push({ deviceId: imei, label, prefix: positionPrefix(imei, label) });
  }
  return devices;
}
