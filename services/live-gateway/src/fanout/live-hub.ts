import type { Uid } from '@pitwall/live-protocol';
import type { TemplatedApp } from 'uWebSockets.js';
import { inWindow, type EventDirectory, type EventEntries } from '../events/event-directory.js';
import type { EntryId } from '../history/entry-id.js';
import { PositionHistory, type HeldPosition } from '../history/position-history.js';
import type { GatewayMetrics } from '../metrics.js';
import type { LivePosition } from '../protocol/position-json.js';
import { positionsMessage, subscribedMessage } from '../protocol/server-message.js';
import { nextSlotMs } from './flush-slots.js';
import type { HubClient } from './hub-client.js';
import type { LatestPositions } from './latest-positions.js';
import { tracedPosition, tracePublished, type TracedPosition } from './publish-trace.js';

export interface LiveHubOptions {
  /** An event's positions go out as one frame at its next slot, slots this far apart at a phase per event (flush-slots.ts); 0: one frame per read batch. */
  batchWindowMs: number;
  /** Buffered bytes beyond which a client is conflated. */
  conflateBufferBytes: number;
  /** A conflated client without progress for this long is closed. */
  slowClientTimeoutMs: number;
  /** What this pod read lately, for resumes (`since`) and trails (`history_seconds`); default: none. */
  history?: PositionHistory;
  /** How long a subscribe whose cursor is ahead of this pod waits for it (default 2000 ms). */
  resumeWaitMs?: number;
}

/** What a subscribe asks besides the snapshot. */
export interface JoinRequest {
  /** Resume from this cursor (SubscribeRequest.since). */
  since?: string | undefined;
  /** Trails: positions of the last this many seconds (SubscribeRequest.history_seconds). */
  historySeconds?: number | undefined;
}

/** A subscribe whose cursor is ahead of this pod, waiting for the pod to read that far. */
interface CatchUpWaiter {
  ids: readonly (EntryId | undefined)[];
  resolve: () => void;
  timer: NodeJS.Timeout;
}

interface PendingFrame {
  parts: string[];
  rx: number[];
  timer: NodeJS.Timeout | undefined;
  /** Sampled positions in the frame: their traces get the publish. */
  traced: TracedPosition[] | undefined;
}

/**
 * A client that gets no topic frames: it collects which devices changed and gets their latest
 * positions at once later. Either it fell behind (slow: flushed when its socket drains), or its
 * delivery is held (its token expired: flushed when a fresh token arrives).
 */
interface Conflation {
  sinceMs: number;
  /** Devices changed since the last flush, per subscribed event. */
  dirty: Map<number, Set<string>>;
  /** Counted in the conflated-clients gauge (it fell behind, as opposed to only being held). */
  slow: boolean;
}

/** The hub's view of one client with at least one subscription. */
interface Member {
  readonly client: HubClient;
  /**
   * Its subscribed events, in join order: an array, as a client has a few at most (the session's
   * maxSubscriptions) and a Set costs several times the bytes.
   */
  events: number[];
  conflation: Conflation | undefined;
  /** Delivery held: nothing is sent until resume(). */
  held: boolean;
}

/** A frame never holds more positions than this; a bigger burst goes out in several. */
const MAX_POSITIONS_PER_FRAME = 5_000;
/** Distinct resume cursors per event whose recovery frames are kept for sharing. */
const MAX_SHARED_RECOVERIES = 16;

/** A recovery made for a cursor: the positions frame (none when nothing was missed) and the reply's cursor. */
interface Recovery {
  frame: Buffer | undefined;
  positions: number;
  cursor: string;
}

/** Recoveries of one event, valid while the pod has read nothing more and its entries are the same. */
interface SharedRecoveries {
  readTo: string;
  entries: EventEntries;
  bySince: Map<string, Recovery>;
}

export function eventTopic(eventId: number): string {
  return `event/${eventId}`;
}

/**
 * Subscriptions and fan-out. One uWS topic per event: the positions of an event within the batch
 * window are serialised once into one frame and published to the topic; uWS copies the bytes to
 * each subscriber. A position goes to an event only when its device is entered in the event and its
 * device time is inside the event's window. A client that falls behind leaves its topics and is
 * conflated: it collects which devices changed and gets their latest positions when its socket
 * drains; a client that makes no progress for too long is asked to disconnect. Nothing here is per
 * recipient except for conflated and held clients. The hub never closes a socket or sends protocol
 * replies itself: sessions do.
 */
export class LiveHub {
  private readonly pending = new Map<number, PendingFrame>();
  private readonly subscriberCount = new Map<number, number>();
  private readonly conflatedByEvent = new Map<number, Set<Member>>();
  private readonly members = new Map<HubClient, Member>();
  /** Recovery frames made for an event, shared by the clients that resume it from the same cursor. */
  private readonly recoveries = new Map<number, SharedRecoveries>();
  private subscriptionCount = 0;
  private readonly history: PositionHistory;
  private waiters: CatchUpWaiter[] = [];
  /** Per event with a pending frame so far, the slot its timer published last. */
  private readonly lastSlots = new Map<number, number>();

  constructor(
    private readonly app: TemplatedApp,
    private readonly directory: EventDirectory,
    private readonly latest: LatestPositions,
    private readonly metrics: GatewayMetrics,
    private readonly options: LiveHubOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.history = options.history ?? new PositionHistory({ shards: 1, sources: 1, windowMs: 0, maxBytes: 0 });
  }

  /** Clients with at least one subscription. */
  get memberCount(): number {
    return this.members.size;
  }

  /** The events a client is subscribed to (joined, not left, not closed); undefined: none. */
  eventsOf(client: HubClient): readonly number[] | undefined {
    return this.members.get(client)?.events;
  }

  /** Whether a client is subscribed to an event. */
  isJoined(client: HubClient, eventId: number): boolean {
    return this.members.get(client)?.events.includes(eventId) === true;
  }

  /**
   * Resolves once this pod has read as far as the cursor `since` on every shard stream, or after
   * `timeoutMs` (then join() answers `recovered: false`): the pod reads the same streams, so this is
   * normally a few milliseconds. A cursor from a pod a little ahead of this one
   * would otherwise get live frames repeating what it already had.
   */
  whenCaughtUp(since: string, timeoutMs = this.options.resumeWaitMs ?? 2_000): Promise<void> {
    const ids = this.history.decode(since);
    if (ids === undefined || this.history.recoverability(ids) !== 'ahead') return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: CatchUpWaiter = {
        ids,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve();
        }, timeoutMs),
      };
      // A waiting subscribe never keeps a stopping process alive.
      waiter.timer.unref();
      this.waiters.push(waiter);
    });
  }

  /**
   * Sends `subscribed` and joins the event's topic. Without `since`: the event's snapshot. With `since`
   * (a cursor from this or any other pod): when this pod holds everything after it, `recovered: true`
   * and the missed positions in `positions` frames right behind the reply, before any live frame;
   * otherwise `recovered: false` and the snapshot. With `historySeconds`: the trail in `history`.
   */
  join(client: HubClient, eventId: number, entries: EventEntries, uid?: Uid, request: JoinRequest = {}): void {
    const transport = client.transport;
    if (transport === undefined) return;
    let member = this.members.get(client);
    const isNew = member === undefined || !member.events.includes(eventId);
    // A client already behind (more queued than the conflation threshold) gets no recovery: uWS would
    // drop a big frame queued behind what it has not read, and the gap would go unnoticed.
    const behind = transport.bufferedAmount() > this.options.conflateBufferBytes;
    const replies = this.replyFrames(eventId, entries, uid, request, isNew && !behind);
    const frame = replies[0] as Buffer;
    if (member === undefined) {
      member = { client, events: [], conflation: undefined, held: false };
      this.members.set(client, member);
    }
    if (isNew) {
      // A copy at its exact length (push would reserve room for 16 more).
      member.events = member.events.concat(eventId);
      this.subscriptionCount++;
      const count = (this.subscriberCount.get(eventId) ?? 0) + 1;
      this.subscriberCount.set(eventId, count);
      if (count === 1) this.directory.setWatched(eventId, true, entries);
      this.updateGauges();
    }
    const joined = member;
    transport.cork(() => {
      for (const reply of replies) transport.send(reply);
      if (!isNew) return;
      if (joined.conflation === undefined) transport.subscribe(eventTopic(eventId));
      else this.joinConflated(joined, eventId, new Set());
    });
    this.count('snapshot', frame.byteLength, 0);
  }

  /** The `subscribed` reply, then the frames of a recovery. */
  private replyFrames(eventId: number, entries: EventEntries, uid: Uid | undefined, request: JoinRequest, isNew: boolean): Buffer[] {
    const { since, historySeconds } = request;
    if (since === undefined && historySeconds === undefined) {
      const snapshot = this.latestOf(entries, undefined);
      this.metrics.positionsSent.inc({ kind: 'snapshot' }, snapshot.length);
      return [Buffer.from(subscribedMessage(eventId, snapshot, uid, { cursor: this.history.cursor() }))];
    }
    // What is pending for the event goes to its current subscribers now: from here on, everything of
    // the event up to the processed position has been published, and the frames after this reply
    // start right after it.
    this.flush(eventId);
    const processed = this.history.processedIds();
    const devices = entries.devices.map((device) => device.deviceId);
    const prefixes = new Map(entries.devices.map((device) => [device.deviceId, device.prefix]));
    const accept = (position: HeldPosition) => inWindow(entries, position.ts);
    const part = (position: HeldPosition) => (prefixes.get(position.deviceId) ?? '') + position.body;

    let after: (EntryId | undefined)[] | undefined;
    if (since !== undefined) {
      const ids = this.history.decode(since);
      const state = isNew ? this.history.recoverability(ids) : 'not_new_or_behind';
      this.metrics.resumes.inc({ result: state });
      if (state === 'recoverable') after = ids;
    }
    const recovered = since === undefined ? undefined : after !== undefined;
    const snapshot = recovered === true ? [] : this.latestOf(entries, undefined);
    // A recovered client has its trail already: it gets none again (a reconnect storm would otherwise
    // send every viewer its whole trail once more).
    let history: string[] | undefined;
    if (historySeconds !== undefined && recovered === true) history = [];
    else if (historySeconds !== undefined) {
      const seconds = Math.min(historySeconds, this.history.windowMs / 1000);
      history = this.history.collect(devices, accept, { fromMs: this.now() - seconds * 1000 }).map(part);
    }
    const recovery =
      after === undefined || since === undefined
        ? undefined
        : this.recoveryFrame(eventId, entries, since, () => {
            const missed = this.history.collect(devices, accept, { after });
            if (missed.length === 0) return { frame: undefined, positions: 0, cursor: this.history.encode(processed) };
            // One frame, whatever its size: uWS refuses a frame only while more than maxBackpressure is
            // queued, which a small reply on a client that is not behind never is; several frames could
            // see the later ones dropped behind the first. Its cursor: where the pod is now.
            const frame = Buffer.from(positionsMessage(eventId, missed.map(part), this.history.encode(processed)));
            return { frame, positions: missed.length, cursor: this.history.encode(after) };
          });
    const replies: Buffer[] = [];
    const cursorAfterReply = recovery?.cursor ?? this.history.encode(processed);
    replies.push(Buffer.from(subscribedMessage(eventId, snapshot, uid, { recovered, history, cursor: cursorAfterReply })));
    this.metrics.positionsSent.inc({ kind: 'snapshot' }, snapshot.length + (history?.length ?? 0));
    if (recovery?.frame !== undefined) {
      replies.push(recovery.frame);
      this.count('recovered', recovery.frame.byteLength, recovery.positions);
    }
    return replies;
  }

  /**
   * The recovery of `eventId` from `since`, made once and shared while nothing new was read: a drained
   * pod's viewers of an event all hold the cursor of the last frame they got, so a reconnect storm asks
   * the same recovery of the new pod thousands of times within a few reads.
   */
  private recoveryFrame(eventId: number, entries: EventEntries, since: string, make: () => Recovery): Recovery {
    const readTo = this.history.cursor();
    let shared = this.recoveries.get(eventId);
    if (shared === undefined || shared.readTo !== readTo || shared.entries !== entries) {
      shared = { readTo, entries, bySince: new Map() };
      this.recoveries.set(eventId, shared);
    }
    let recovery = shared.bySince.get(since);
    if (recovery === undefined) {
      // Bounded: cursors a client sends are arbitrary; beyond a few distinct ones nothing is shared anyway.
      if (shared.bySince.size >= MAX_SHARED_RECOVERIES) shared.bySince.clear();
      recovery = make();
      shared.bySince.set(since, recovery);
    }
    return recovery;
  }

  /** Ends a subscription. Returns whether there was one. Idempotent. */
  leave(client: HubClient, eventId: number): boolean {
    const member = this.members.get(client);
    if (member === undefined || !this.remove(member, eventId)) return false;
    client.transport?.unsubscribe(eventTopic(eventId));
    return true;
  }

  /** Forgets a closed client's subscriptions (uWS already left its topics). */
  removeClient(client: HubClient): void {
    const member = this.members.get(client);
    if (member === undefined) return;
    for (const eventId of [...member.events]) {
      this.remove(member, eventId);
      this.metrics.unsubscribes.inc({ reason: 'closed' });
    }
    this.endConflation(member);
    this.members.delete(client);
  }

  /**
   * Holds a client's delivery at once (its token expired): it leaves its topics and gets nothing until
   * resume(); which devices changed meanwhile is collected, as for a conflated client.
   */
  hold(client: HubClient): void {
    const member = this.members.get(client);
    if (member === undefined || member.held) return;
    member.held = true;
    if (member.conflation === undefined) this.conflate(member, false);
  }

  /** Delivery again (a fresh token): the latest position of each device that changed, then the topics. */
  resume(client: HubClient): void {
    const member = this.members.get(client);
    if (member === undefined || !member.held) return;
    member.held = false;
    const transport = client.transport;
    if (member.conflation === undefined || transport === undefined) return;
    if (transport.bufferedAmount() <= this.lowWater()) {
      this.flushConflated(member);
    } else if (!member.conflation.slow) {
      // Behind as well: from now on a slow client like any other.
      member.conflation.slow = true;
      member.conflation.sinceMs = this.now();
      this.metrics.conflatedClients.inc();
    }
  }

  /** Hot path: positions just read from the stream. */
  onPositions(positions: readonly LivePosition[]): void {
    for (const position of positions) {
      // The monotonic filter: only a position newer than the last one of its device goes out (and
      // into the history, which replays exactly what viewers got; the cursor moves past it anyway).
      const result = this.latest.update(position);
      if (result !== 'kept') {
        this.history.skip(position);
        this.metrics.positionsDropped.inc({ reason: result });
        continue;
      }
      this.history.add(position);
      const routes = this.directory.routesOf(position.deviceId);
      if (routes === undefined) continue;
      for (const route of routes) {
        // A tracker entered in several events shows in the one whose time this is.
        if (position.ts < route.fromMs || position.ts > route.toMs) continue;
        let frame = this.pending.get(route.eventId);
        if (frame === undefined) {
          frame = { parts: [], rx: [], timer: undefined, traced: undefined };
          this.pending.set(route.eventId, frame);
          if (this.options.batchWindowMs > 0) frame.timer = this.flushAtSlot(route.eventId);
        }
        frame.parts.push(route.prefix + position.body);
        frame.rx.push(position.rx);
        if (position.traceparent !== undefined) (frame.traced ??= []).push(tracedPosition(position));
        const conflated = this.conflatedByEvent.get(route.eventId);
        if (conflated !== undefined) {
          for (const member of conflated) {
            const dirty = member.conflation?.dirty.get(route.eventId);
            if (dirty === undefined) continue;
            if (dirty.has(position.deviceId)) this.metrics.conflationDrops.inc();
            else dirty.add(position.deviceId);
          }
        }
        if (frame.parts.length >= MAX_POSITIONS_PER_FRAME) this.flush(route.eventId);
      }
    }
    this.metrics.latestCacheDevices.set(this.latest.size);
    this.metrics.historyBytes.set(this.history.bytes);
    this.metrics.historyPositions.set(this.history.size);
    if (this.options.batchWindowMs === 0) for (const eventId of [...this.pending.keys()]) this.flush(eventId);
    if (this.waiters.length > 0) this.releaseWaiters();
  }

  /** The timer of an event's new pending frame: its next slot (flush-slots.ts). */
  private flushAtSlot(eventId: number): NodeJS.Timeout {
    const now = this.now();
    const slot = nextSlotMs(now, this.options.batchWindowMs, eventId, this.lastSlots.get(eventId));
    return setTimeout(() => {
      this.lastSlots.set(eventId, slot);
      this.flush(eventId);
    }, slot - now);
  }

  private releaseWaiters(): void {
    const waiting: CatchUpWaiter[] = [];
    for (const waiter of this.waiters) {
      if (this.history.recoverability(waiter.ids) === 'ahead') {
        waiting.push(waiter);
      } else {
        clearTimeout(waiter.timer);
        waiter.resolve();
      }
    }
    this.waiters = waiting;
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
    const bytes = Buffer.from(positionsMessage(eventId, frame.parts, this.history.cursor()));
    this.app.publish(topic, bytes, false);
    const now = this.now();
    if (frame.traced !== undefined) tracePublished(frame.traced, eventId, recipients);
    this.metrics.framesPublished.inc();
    this.count('positions', bytes.byteLength * recipients, frame.parts.length * recipients, recipients);
    for (const rx of frame.rx) this.metrics.fanoutLatency.observe((now - rx) / 1000);
  }

  /** Publishes every pending frame now (shutdown, tests). */
  flushAll(): void {
    for (const eventId of [...this.pending.keys()]) this.flush(eventId);
  }

  /** Periodic sweep over subscribed clients: conflate the ones behind, ask the stuck ones to go. */
  checkSlowClients(): void {
    const now = this.now();
    for (const member of this.members.values()) {
      // A held client is closed by its session's grace timer, not here.
      if (member.held) continue;
      const transport = member.client.transport;
      if (transport === undefined) continue;
      const buffered = transport.bufferedAmount();
      if (member.conflation === undefined) {
        if (buffered > this.options.conflateBufferBytes) this.conflate(member, true);
      } else if (buffered <= this.lowWater()) {
        this.flushConflated(member);
      } else if (now - member.conflation.sinceMs > this.options.slowClientTimeoutMs) {
        this.metrics.slowClientsClosed.inc();
        member.client.disconnect('slow');
      }
    }
  }

  /** uWS drain: a conflated client that caught up gets its latest positions and rejoins its topics. */
  onDrain(client: HubClient): void {
    const member = this.members.get(client);
    const transport = client.transport;
    if (member?.conflation === undefined || member.held || transport === undefined) return;
    if (transport.bufferedAmount() <= this.lowWater()) this.flushConflated(member);
  }

  /** The latest position of each device of an event that is inside its window (`only`: of these devices). */
  private latestOf(entries: EventEntries, only: ReadonlySet<string> | undefined): string[] {
    const parts: string[] = [];
    for (const device of entries.devices) {
      if (only !== undefined && !only.has(device.deviceId)) continue;
      const position = this.latest.get(device.deviceId);
      if (position !== undefined && inWindow(entries, position.ts)) parts.push(device.prefix + position.body);
    }
    return parts;
  }

  private conflate(member: Member, slow: boolean): void {
    const transport = member.client.transport;
    if (transport === undefined) return;
    member.conflation = { sinceMs: this.now(), dirty: new Map(), slow };
    if (slow) {
      this.metrics.conflations.inc();
      this.metrics.conflatedClients.inc();
    }
    for (const eventId of member.events) {
      transport.unsubscribe(eventTopic(eventId));
      // Everything: uWS may already have dropped frames beyond maxBackpressure, and frames of the
      // current batch window are published after the client left.
      const all = new Set((this.directory.entriesOf(eventId)?.devices ?? []).map((d) => d.deviceId));
      this.joinConflated(member, eventId, all);
    }
  }

  private joinConflated(member: Member, eventId: number, dirty: Set<string>): void {
    member.conflation?.dirty.set(eventId, dirty);
    let set = this.conflatedByEvent.get(eventId);
    if (set === undefined) this.conflatedByEvent.set(eventId, (set = new Set()));
    set.add(member);
  }

  private flushConflated(member: Member): void {
    const transport = member.client.transport;
    const conflation = member.conflation;
    if (transport === undefined || conflation === undefined) return;
    conflation.sinceMs = this.now();
    transport.cork(() => {
      for (const [eventId, dirty] of conflation.dirty) {
        if (dirty.size === 0) continue;
        const entries = this.directory.entriesOf(eventId);
        const parts = entries === undefined ? [] : this.latestOf(entries, dirty);
        dirty.clear();
        if (parts.length === 0) continue;
        const bytes = Buffer.from(positionsMessage(eventId, parts, this.history.cursor()));
        transport.send(bytes);
        this.count('conflated', bytes.byteLength, parts.length);
      }
    });
    if (transport.bufferedAmount() > this.lowWater()) {
      if (!conflation.slow) {
        conflation.slow = true;
        this.metrics.conflatedClients.inc();
      }
      return;
    }
    // Caught up: back to the shared frames.
    for (const eventId of conflation.dirty.keys()) transport.subscribe(eventTopic(eventId));
    this.endConflation(member);
  }

  private endConflation(member: Member): void {
    const conflation = member.conflation;
    if (conflation === undefined) return;
    for (const eventId of conflation.dirty.keys()) {
      const set = this.conflatedByEvent.get(eventId);
      set?.delete(member);
      if (set?.size === 0) this.conflatedByEvent.delete(eventId);
    }
    member.conflation = undefined;
    if (conflation.slow) this.metrics.conflatedClients.dec();
  }

  private remove(member: Member, eventId: number): boolean {
    const index = member.events.indexOf(eventId);
    if (index < 0) return false;
    member.events.splice(index, 1);
    this.subscriptionCount--;
    member.conflation?.dirty.delete(eventId);
    const conflated = this.conflatedByEvent.get(eventId);
    conflated?.delete(member);
    if (conflated?.size === 0) this.conflatedByEvent.delete(eventId);
    if (member.events.length === 0) {
      this.endConflation(member);
      this.members.delete(member.client);
    }
    const count = (this.subscriberCount.get(eventId) ?? 1) - 1;
    if (count > 0) {
      this.subscriberCount.set(eventId, count);
    } else {
      this.subscriberCount.delete(eventId);
      this.recoveries.delete(eventId);
      this.lastSlots.delete(eventId);
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

  private updateGauges(): void {
    this.metrics.subscriptions.set(this.subscriptionCount);
    this.metrics.watchedEvents.set(this.subscriberCount.size);
  }

  private count(kind: 'positions' | 'snapshot' | 'conflated' | 'recovered', bytes: number, positions: number, frames = 1): void {
    this.metrics.framesSent.inc({ kind }, frames);
    this.metrics.bytesSent.inc({ kind }, bytes);
    if (positions > 0) this.metrics.positionsSent.inc({ kind }, positions);
  }
}
