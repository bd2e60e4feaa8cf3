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

/**
 * Device times an event shows: its `starts_at` to `ends_at` widened by the margin on both sides. An
 * unset end is open (-Infinity / Infinity).
 */
export interface EventWindow {
  fromMs: number;
  toMs: number;
}

/** What an event shows: its devices, and only their positions of its time window. */
export interface EventEntries extends EventWindow {
  devices: EventDevice[];
}

/** Where a device's positions go: each watched event it is entered in, when the position is in its window. */
export interface DeviceRoute extends EventWindow {
  eventId: number;
  prefix: string;
}

interface EventRecord {
  entries: EventEntries;
  fetchedAtMs: number;
  watched: boolean;
}

/** Whether a position of device time `ts` belongs to an event with this window. */
export function inWindow(window: EventWindow, ts: number): boolean {
  return ts >= window.fromMs && ts <= window.toMs;
}

/**
 * Which devices each event shows, and when: the event's entries (device IMEI and label) and its time
 * window (starts_at/ends_at, widened by `windowMarginMs`), read from Directus with the service token in
 * one call, cached per event and re-read while the event is watched. A tracker is reused from one event
 * to the next, so a device's position belongs to an event only when its device time is inside the
 * event's window. Keeps the hot-path index device -> watched events (with their windows), so routing a
 * position is one map lookup and two comparisons per event.
 */
export class EventDirectory {
  private readonly events = new Map<number, EventRecord>();
  private readonly inFlight = new Map<number, Promise<EventEntries>>();
  private readonly routes = new Map<string, DeviceRoute[]>();

  constructor(
    private readonly directus: DirectusClient,
    private readonly serviceToken: string,
    private readonly metrics: GatewayMetrics,
    private readonly refreshIntervalMs: number,
    private readonly windowMarginMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Devices of an event: cached if the event is watched (refresh() keeps it current) or was read within
   * the refresh interval, else read now. When Directus cannot answer, a stale copy is used if there is
   * one; otherwise DirectusUnavailableError. So a race start reads each event's entries once per pod,
   * whatever the number of viewers subscribing.
   */
  async load(eventId: number): Promise<EventEntries> {
    const record = this.events.get(eventId);
    if (record !== undefined && (record.watched || this.now() - record.fetchedAtMs < this.refreshIntervalMs)) {
      this.metrics.cacheHits.inc({ cache: 'entries' });
      return record.entries;
    }
    this.metrics.cacheMisses.inc({ cache: 'entries' });
    try {
      return await this.fetch(eventId);
    } catch (err) {
      if (record !== undefined && err instanceof DirectusUnavailableError) return record.entries;
      throw err;
    }
  }

  /** An event's devices and window as last read, if it was. */
  entriesOf(eventId: number): EventEntries | undefined {
    return this.events.get(eventId)?.entries;
  }

  /** Hot path: the watched events a device's positions go to. */
  routesOf(deviceId: string): readonly DeviceRoute[] | undefined {
    return this.routes.get(deviceId);
  }

  /**
   * Puts an event's devices into (or takes them out of) the routing index. `entries` (what load()
   * returned) is used when the event was forgotten in between.
   */
  setWatched(eventId: number, watched: boolean, entries?: EventEntries): void {
    let record = this.events.get(eventId);
    if (record === undefined && watched && entries !== undefined) {
      record = { entries, fetchedAtMs: this.now(), watched: false };
      this.events.set(eventId, record);
    }
    if (record === undefined || record.watched === watched) return;
    record.watched = watched;
    if (watched) this.index(eventId, record.entries);
    else this.unindex(eventId, record.entries.devices);
  }

  /** Re-reads the entries of every watched event and forgets unwatched ones once stale. */
  async refresh(): Promise<void> {
    const now = this.now();
    const watched: number[] = [];
    for (const [eventId, record] of this.events) {
      if (record.watched) watched.push(eventId);
      else if (now - record.fetchedAtMs >= this.refreshIntervalMs) this.events.delete(eventId);
    }
    await Promise.all(watched.map((eventId) => this.fetch(eventId, 'entries_refresh').catch(() => undefined)));
  }

  private fetch(eventId: number, purpose: 'entries' | 'entries_refresh' = 'entries'): Promise<EventEntries> {
    const running = this.inFlight.get(eventId);
    if (running !== undefined) return running;
    const call = this.read(eventId, purpose).finally(() => this.inFlight.delete(eventId));
    this.inFlight.set(eventId, call);
    return call;
  }

  private async read(eventId: number, purpose: 'entries' | 'entries_refresh'): Promise<EventEntries> {
    let entries: EventEntries;
    try {
      const res = await this.directus.get(
        purpose,
        `/items/entries?filter[event][_eq]=${eventId}&fields=label,device.imei,event.starts_at,event.ends_at&limit=-1`,
        this.serviceToken,
      );
      if (res.status !== 200)
        throw new DirectusUnavailableError(`Directus refused to list the entries of event ${eventId} (HTTP ${res.status})`);
      const parsed = parseEntries(res.body);
      entries = {
        devices: parsed.devices,
        fromMs: parsed.startsAtMs - this.windowMarginMs,
        toMs: parsed.endsAtMs + this.windowMarginMs,
      };
    } catch (err) {
      this.metrics.entriesFetches.inc({ result: 'error' });
      throw err;
    }
    this.metrics.entriesFetches.inc({ result: 'ok' });
    const previous = this.events.get(eventId);
    const watched = previous?.watched ?? false;
    if (watched && previous !== undefined) this.unindex(eventId, previous.entries.devices);
    this.events.set(eventId, { entries, fetchedAtMs: this.now(), watched });
    if (watched) this.index(eventId, entries);
    return entries;
  }

  private index(eventId: number, entries: EventEntries): void {
    for (const device of entries.devices) {
      const list = this.routes.get(device.deviceId);
      const route: DeviceRoute = { eventId, prefix: device.prefix, fromMs: entries.fromMs, toMs: entries.toMs };
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

export interface ParsedEntries {
  devices: EventDevice[];
  /** The event's starts_at, ms; -Infinity when unset (or when it has no entries). */
  startsAtMs: number;
  /** The event's ends_at, ms; Infinity when unset (or when it has no entries). */
  endsAtMs: number;
}

/** An ISO timestamp of Directus as ms; unset is `open`; anything else unreadable. */
function readTime(value: unknown, open: number): number {
  if (value === null || value === undefined) return open;
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new DirectusUnavailableError(`Directus sent an unreadable event time ${JSON.stringify(value)}`);
  return ms;
}

/**
 * `{data: [{label, device: {imei}, event: {starts_at, ends_at}}]}` -> devices and the event's window;
 * entries without a device are skipped. The event must come expanded (the service token reads events):
 * without its window, positions of other events would show.
 */
export function parseEntries(body: unknown): ParsedEntries {
  const data = typeof body === 'object' && body !== null && 'data' in body ? body.data : undefined;
  if (!Array.isArray(data)) throw new DirectusUnavailableError('Directus entries answer has no data list');
  const devices: EventDevice[] = [];
  const seen = new Set<string>();
  let startsAtMs = Number.NEGATIVE_INFINITY;
  let endsAtMs = Number.POSITIVE_INFINITY;
  let windowRead = false;
  for (const entry of data as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    if (!windowRead) {
      const event = 'event' in entry ? entry.event : undefined;
      if (typeof event !== 'object' || event === null) {
        throw new DirectusUnavailableError('Directus entries answer lacks the event window (may the service token read events?)');
      }
      startsAtMs = readTime('starts_at' in event ? event.starts_at : undefined, Number.NEGATIVE_INFINITY);
      endsAtMs = readTime('ends_at' in event ? event.ends_at : undefined, Number.POSITIVE_INFINITY);
      windowRead = true;
    }
    const device = 'device' in entry ? entry.device : undefined;
    const imei = typeof device === 'object' && device !== null && 'imei' in device ? device.imei : undefined;
    if (typeof imei !== 'string' || imei.length === 0 || seen.has(imei)) continue;
    const rawLabel = 'label' in entry ? entry.label : undefined;
    const label = typeof rawLabel === 'string' ? rawLabel : typeof rawLabel === 'number' ? String(rawLabel) : '';
    seen.add(imei);
    devices.push({ deviceId: imei, label, prefix: positionPrefix(imei, label) });
  }
  return { devices, startsAtMs, endsAtMs };
}
