import type { TemplatedApp } from 'uWebSockets.js';
import type { Connection } from '../connection.js';
import type { EventDevice, EventDirectory } from '../events/event-directory.js';
import type { GatewayMetrics } from '../metrics.js';
import type { LivePosition } from '../protocol/position-json.js';
import { positionsMessage, subscribedMessage, unsubscribedMessage, type UnsubscribeReason } from '../protocol/server-message.js';
import type { Uid } from '../protocol/client-message.js';
import type { LatestPositions } from './latest-positions.js';

export interface LiveHubOptions {
  /** Positions of an event within this window go out as one frame; 0: one frame per read batch. */
  batchWindowMs: number;
  /** Buffered bytes beyond which a client is conflated. */
  conflateBufferBytes: number;
  /** A conflated client without progress for this long is closed. */
  slowClientTimeoutMs: number;
  /** Every subscription is re-validated this often (the hub only schedules it). */
  revalidateIntervalMs: number;
}

interface PendingFrame {
  parts: string[];
  rx: number[];
  timer: NodeJS.Timeout | undefined;
}

/** A frame never holds more positions than this; a bigger burst goes out in several. */
const MAX_POSITIONS_PER_FRAME = 5_000;

export function eventTopic(eventId: number): string {
  return `event/${eventId}`;
}

/**
 * Subscriptions and fan-out. One uWS topic per event: the positions of an event within the batch
 * window are serialised once into one frame and published to the topic; uWS copies the bytes to
 * each subscriber. A client that falls behind leaves its topics and is conflated: it collects which
 * devices changed and gets their latest positions when its socket drains; a client that makes no
 * progress for too long is closed. Nothing here is per recipient except for conflated clients.
 */
export class LiveHub {
  private readonly pending = new Map<number, PendingFrame>();
  private readonly subscriberCount = new Map<number, number>();
  private readonly conflatedByEvent = new Map<number, Set<Connection>>();
  private readonly subscribed = new Set<Connection>();
  private subscriptionCount = 0;

  constructor(
    private readonly app: TemplatedApp,
    private readonly directory: EventDirectory,
    private readonly latest: LatestPositions,
    private readonly metrics: GatewayMetrics,
    private readonly options: LiveHubOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Connections with at least one subscription. */
  get subscribers(): ReadonlySet<Connection> {
    return this.subscribed;
  }

  /** Sends `subscribed` with the event's snapshot and joins the event's topic. */
  subscribe(conn: Connection, eventId: number, devices: EventDevice[], uid?: Uid): void {
    const ws = conn.ws;
    if (ws === undefined || conn.closed) return;
    const snapshot: string[] = [];
    for (const device of devices) {
      const position = this.latest.get(device.deviceId);
      if (position !== undefined) snapshot.push(device.prefix + position.body);
    }
    const frame = Buffer.from(subscribedMessage(eventId, snapshot, uid));
    const isNew = !conn.subscriptions.has(eventId);
    if (isNew) {
      conn.subscriptions.set(eventId, { nextCheckAtMs: this.nextCheckAt() });
      this.subscribed.add(conn);
      this.subscriptionCount++;
      const count = (this.subscriberCount.get(eventId) ?? 0) + 1;
      this.subscriberCount.set(eventId, count);
      if (count === 1) this.directory.setWatched(eventId, true, devices);
      this.updateGauges();
    }
    ws.cork(() => {
      ws.send(frame, false);
      if (!isNew) return;
      if (conn.conflation === undefined) ws.subscribe(eventTopic(eventId));
      else this.joinConflated(conn, eventId, new Set());
    });
    this.count('snapshot', frame.byteLength, snapshot.length);
  }

  /** Ends a subscription; tells the client unless it is gone. Idempotent. */
  unsubscribe(conn: Connection, eventId: number, reason: UnsubscribeReason, uid?: Uid): void {
    if (this.remove(conn, eventId) && !conn.closed) conn.ws?.unsubscribe(eventTopic(eventId));
    this.metrics.unsubscribes.inc({ reason });
    if (!conn.closed && conn.ws !== undefined) {
      conn.ws.send(unsubscribedMessage(eventId, reason, uid), false);
      this.metrics.framesSent.inc({ kind: 'control' });
    }
  }

  /** Forgets a closed connection's subscriptions (uWS already left its topics). */
  removeConnection(conn: Connection): void {
    for (const eventId of [...conn.subscriptions.keys()]) {
      this.remove(conn, eventId);
      this.metrics.unsubscribes.inc({ reason: 'closed' });
    }
    if (conn.conflation !== undefined) {
      conn.conflation = undefined;
      this.metrics.conflatedClients.dec();
    }
    this.subscribed.delete(conn);
  }

  /** Hot path: positions just read from the stream. */
  onPositions(positions: readonly LivePosition[]): void {
    for (const position of positions) {
      this.latest.update(position);
      const routes = this.directory.routesOf(position.deviceId);
      if (routes === undefined) continue;
      for (const route of routes) {
        let frame = this.pending.get(route.eventId);
        if (frame === undefined) {
          frame = { parts: [], rx: [], timer: undefined };
          this.pending.set(route.eventId, frame);
          if (this.options.batchWindowMs > 0) {
            const eventId = route.eventId;
            frame.timer = setTimeout(() => this.flush(eventId), this.options.batchWindowMs);
          }
        }
        frame.parts.push(route.prefix + position.body);
        frame.rx.push(position.rx);
        const conflated = this.conflatedByEvent.get(route.eventId);
        if (conflated !== undefined) {
          for (const conn of conflated) {
            const dirty = conn.conflation?.dirty.get(route.eventId);
            if (dirty === undefined) continue;
            if (dirty.has(position.deviceId)) this.metrics.conflationDrops.inc();
            else dirty.add(position.deviceId);
          }
        }
        if (frame.parts.length >= MAX_POSITIONS_PER_FRAME) this.flush(route.eventId);
      }
    }
    this.metrics.latestCacheDevices.set(this.latest.size);
    if (this.options.batchWindowMs === 0) for (const eventId of [...this.pending.keys()]) this.flush(eventId);
  }

  /** Publishes an event's pending positions as one frame, serialised once. */
  flush(eventId: number): void {
    const frame = this.pending.get(eventId);
    if (frame === undefined) return;
    this.pending.delete(eventId);
    clearTimeout(frame.timer);
    const topic = eventTopic(eventId);
    const recipients = this.app.numSubscribers(topic);
    if (recipients === 0) return;
    const bytes = Buffer.from(positionsMessage(eventId, frame.parts));
    this.app.publish(topic, bytes, false);
    const now = this.now();
    this.metrics.framesPublished.inc();
    this.count('positions', bytes.byteLength * recipients, frame.parts.length * recipients, recipients);
    for (const rx of frame.rx) this.metrics.fanoutLatency.observe((now - rx) / 1000);
  }

  /** Publishes every pending frame now (shutdown, tests). */
  flushAll(): void {
    for (const eventId of [...this.pending.keys()]) this.flush(eventId);
  }

  /** Periodic sweep over subscribed connections: conflate the ones behind, close the stuck ones. */
  checkSlowClients(): void {
    const now = this.now();
    for (const conn of this.subscribed) {
      const ws = conn.ws;
      if (ws === undefined || conn.closed) continue;
      const buffered = ws.getBufferedAmount();
      if (conn.conflation === undefined) {
        if (buffered > this.options.conflateBufferBytes) this.conflate(conn);
      } else if (buffered <= this.lowWater()) {
        this.flushConflated(conn);
      } else if (now - conn.conflation.sinceMs > this.options.slowClientTimeoutMs) {
        this.metrics.slowClientsClosed.inc();
        conn.closeReason = 'slow';
        // Forceful: a close frame would queue behind everything the client is not reading.
        ws.close();
      }
    }
  }

  /** uWS drain: a conflated client that caught up gets its latest positions and rejoins its topics. */
  onDrain(conn: Connection): void {
    if (conn.conflation === undefined || conn.closed || conn.ws === undefined) return;
    if (conn.ws.getBufferedAmount() <= this.lowWater()) this.flushConflated(conn);
  }

  /** Subscriptions whose re-validation is due, with their connection. */
  *dueForRevalidation(nowMs: number): Generator<{ conn: Connection; eventId: number }> {
    for (const conn of this.subscribed) {
      for (const [eventId, subscription] of conn.subscriptions) {
        if (subscription.nextCheckAtMs > nowMs) continue;
        subscription.nextCheckAtMs = this.nextCheckAt();
        yield { conn, eventId };
      }
    }
  }

  private conflate(conn: Connection): void {
    const ws = conn.ws;
    if (ws === undefined) return;
    conn.conflation = { sinceMs: this.now(), dirty: new Map() };
    this.metrics.conflations.inc();
    this.metrics.conflatedClients.inc();
    for (const eventId of conn.subscriptions.keys()) {
      ws.unsubscribe(eventTopic(eventId));
      // Everything: uWS may already have dropped frames for it beyond maxBackpressure.
      const all = new Set((this.directory.devicesOf(eventId) ?? []).map((d) => d.deviceId));
      this.joinConflated(conn, eventId, all);
    }
  }

  private joinConflated(conn: Connection, eventId: number, dirty: Set<string>): void {
    conn.conflation?.dirty.set(eventId, dirty);
    let set = this.conflatedByEvent.get(eventId);
    if (set === undefined) this.conflatedByEvent.set(eventId, (set = new Set()));
    set.add(conn);
  }

  private flushConflated(conn: Connection): void {
    const ws = conn.ws;
    const conflation = conn.conflation;
    if (ws === undefined || conflation === undefined) return;
    conflation.sinceMs = this.now();
    ws.cork(() => {
      for (const [eventId, dirty] of conflation.dirty) {
        if (dirty.size === 0) continue;
        const parts: string[] = [];
        for (const device of this.directory.devicesOf(eventId) ?? []) {
          if (!dirty.has(device.deviceId)) continue;
          const position = this.latest.get(device.deviceId);
          if (position !== undefined) parts.push(device.prefix + position.body);
        }
        dirty.clear();
        if (parts.length === 0) continue;
        const bytes = Buffer.from(positionsMessage(eventId, parts));
        ws.send(bytes, false);
        this.count('conflated', bytes.byteLength, parts.length);
      }
    });
    if (ws.getBufferedAmount() > this.lowWater()) return;
    // Caught up: back to the shared frames.
    for (const eventId of conflation.dirty.keys()) {
      this.conflatedByEvent.get(eventId)?.delete(conn);
      if (this.conflatedByEvent.get(eventId)?.size === 0) this.conflatedByEvent.delete(eventId);
      ws.subscribe(eventTopic(eventId));
    }
    conn.conflation = undefined;
    this.metrics.conflatedClients.dec();
  }

  private remove(conn: Connection, eventId: number): boolean {
    if (!conn.subscriptions.delete(eventId)) return false;
    this.subscriptionCount--;
    if (conn.subscriptions.size === 0) this.subscribed.delete(conn);
    conn.conflation?.dirty.delete(eventId);
    const conflated = this.conflatedByEvent.get(eventId);
    conflated?.delete(conn);
    if (conflated?.size === 0) this.conflatedByEvent.delete(eventId);
    const count = (this.subscriberCount.get(eventId) ?? 1) - 1;
    if (count > 0) {
      this.subscriberCount.set(eventId, count);
    } else {
      this.subscriberCount.delete(eventId);
      this.directory.setWatched(eventId, false);
      const frame = this.pending.get(eventId);
      if (frame !== undefined) {
        clearTimeout(frame.timer);
        this.pending.delete(eventId);
      }
    }
    this.updateGauges();
    return true;
  }

  private lowWater(): number {
    return this.options.conflateBufferBytes / 4;
  }

  private nextCheckAt(): number {
    // Jitter spreads re-validations of subscriptions made together (race start) over time.
    return this.now() + this.options.revalidateIntervalMs * (0.9 + Math.random() * 0.2);
  }

  private updateGauges(): void {
    this.metrics.subscriptions.set(this.subscriptionCount);
    this.metrics.watchedEvents.set(this.subscriberCount.size);
  }

  private count(kind: 'positions' | 'snapshot' | 'conflated', bytes: number, positions: number, frames = 1): void {
    this.metrics.framesSent.inc({ kind }, frames);
    this.metrics.bytesSent.inc({ kind }, bytes);
    if (positions > 0) this.metrics.positionsSent.inc({ kind }, positions);
  }
}
