import type { LivePosition } from '../protocol/position-json.js';
import { atOrAfter, decodeCursor, encodeCursor } from './cursor.js';
import { compareIds, type EntryId } from './entry-id.js';
import { Queue } from './queue.js';

/** A position the history holds: read from a known source with its entry id. */
export interface HeldPosition extends LivePosition {
  source: number;
  id: EntryId;
}

export interface PositionHistoryOptions {
  /** Shard streams (sources 0..shards-1); the cursor format depends on it. */
  shards: number;
  /** Sources in all: the shards, then any live-only streams read beside them. */
  sources: number;
  /** Positions whose entry is older than the newest one by more than this are dropped (0: no history). */
  windowMs: number;
  /** Bound on the estimated bytes held; beyond it the oldest positions go first (the window shrinks). */
  maxBytes: number;
}

/** Heap bytes of a held position besides its JSON body: the object, its id, two queue slots (measured: test/history.test.ts). */
export const HELD_OVERHEAD_BYTES = 260;
/**
 * Heap bytes of a position's JSON body (about 120 characters). Charged whether or not the body was made
 * yet (ReadPosition makes it when first shown): what a held position costs must not change between
 * its add and its eviction, and the bound holds once every held position has been shown.
 */
export const HELD_BODY_BYTES = 136;

/** What one held position is charged against GATEWAY_HISTORY_MAX_BYTES. */
export const HELD_POSITION_BYTES = HELD_OVERHEAD_BYTES + HELD_BODY_BYTES;

/** What a cursor means to this pod. */
export type Recoverability =
  /** Everything after the cursor is held: a resume gets exactly the positions it missed. */
  | 'recoverable'
  /** Some of what came after the cursor is no longer (or was never) held here. */
  | 'too_old'
  /** The cursor is ahead of what this pod has read (it came from a pod a little ahead): wait. */
  | 'ahead'
  /** Not a cursor of this deployment (another format or shard count). */
  | 'invalid';

const FAR_FUTURE: EntryId = { ms: Number.MAX_SAFE_INTEGER, seq: Number.MAX_SAFE_INTEGER };

/** One device's held positions in the order read, and how many of them each source gave. */
interface DeviceHistory {
  queue: Queue<HeldPosition>;
  /** Positions held per source: a device reads from one shard, and from its live-only stream in an outage. */
  perSource: Map<number, number>;
}

/**
 * The positions this pod read in the last GATEWAY_HISTORY_SECONDS, every device, kept in the order they
 * were read: one FIFO over all of them (eviction by age and by bytes) and one per device (what an event
 * needs: the positions of its devices). Filled from what the pod already reads, so resumes and trails
 * cost no Redis, PostgreSQL or Directus call.
 *
 * Per source it tracks how far the pod has read (`processed`: every frame's cursor) and the `floor`: the
 * newest position it no longer holds (or the start of its reading). A cursor at or after the floor of every
 * shard stream is recoverable: what the client missed is exactly the held positions after the cursor.
 */
export class PositionHistory {
  private readonly fifo = new Queue<HeldPosition>();
  private readonly byDevice = new Map<string, DeviceHistory>();
  private readonly processed: (EntryId | undefined)[];
  private readonly floor: (EntryId | undefined)[];
  private readonly gapAt: boolean[];
  private encoded: string | undefined;
  private heldBytes = 0;
  private newestMs = 0;

  constructor(private readonly options: PositionHistoryOptions) {
    this.processed = new Array<EntryId | undefined>(options.sources).fill(undefined);
    this.floor = new Array<EntryId | undefined>(options.sources).fill(undefined);
    this.gapAt = new Array<boolean>(options.sources).fill(false);
  }

  /** Estimated heap bytes held (bounded by maxBytes). */
  get bytes(): number {
    return this.heldBytes;
  }

  get size(): number {
    return this.fifo.length;
  }

  get windowMs(): number {
    return this.options.windowMs;
  }

  /**
   * Reading of `source` starts after `startId` (the consumer group's start): nothing at or before it is
   * held, except the tail read below it by warm().
   */
  start(source: number, startId: EntryId): void {
    this.floor[source] = startId;
    this.advance(source, startId);
  }

  /**
   * Positions of `source` read from the stream tail before reading starts, oldest first, all at or
   * before its start id. The oldest of them becomes the floor: a client that had it can resume here.
   */
  warm(source: number, positions: readonly LivePosition[]): void {
    const first = positions[0];
    if (first?.id === undefined) return;
    this.floor[source] = first.id;
    for (const position of positions) this.add(position);
  }

  /**
   * Reading of `source` skipped entries (its group was lost and created again at the end): nothing
   * before the next position read is recoverable.
   */
  gap(source: number): void {
    this.floor[source] = FAR_FUTURE;
    this.gapAt[source] = true;
  }

  /** A position just read, in stream order per source. */
  add(position: LivePosition): void {
    const { source, id } = position;
    if (source === undefined || id === undefined || source >= this.options.sources) return;
    if (this.gapAt[source] === true) {
      this.gapAt[source] = false;
      this.floor[source] = id;
    }
    this.advance(source, id);
    if (this.options.windowMs === 0) {
      this.floor[source] = id;
      return;
    }
    const held = position as HeldPosition;
    this.fifo.push(held);
    let device = this.byDevice.get(held.deviceId);
    if (device === undefined) this.byDevice.set(held.deviceId, (device = { queue: new Queue(), perSource: new Map() }));
    device.queue.push(held);
    device.perSource.set(source, (device.perSource.get(source) ?? 0) + 1);
    this.heldBytes += HELD_POSITION_BYTES;
    if (id.ms > this.newestMs) this.newestMs = id.ms;
    this.evict();
  }

  /**
   * A position read but not forwarded (a filter dropped it): the cursor moves past it, the history does
   * not keep it (a resume must replay exactly what live viewers got).
   */
  skip(position: LivePosition): void {
    const { source, id } = position;
    if (source === undefined || id === undefined || source >= this.options.sources) return;
    if (this.gapAt[source] === true) {
      this.gapAt[source] = false;
      this.floor[source] = id;
    }
    this.advance(source, id);
  }

  /** The cursor of everything read so far (what a frame flushed now covers). */
  cursor(): string {
    return (this.encoded ??= encodeCursor(this.options.shards, this.processed));
  }

  /** The ids of a cursor of this deployment, or undefined. */
  decode(cursor: string): (EntryId | undefined)[] | undefined {
    return decodeCursor(cursor, this.options.shards, this.options.sources);
  }

  /** Whether a resume from `ids` can be served here. Only the shard streams count; live-only streams are best effort. */
  recoverability(ids: readonly (EntryId | undefined)[] | undefined): Recoverability {
    if (ids === undefined) return 'invalid';
    for (let source = 0; source < this.options.shards; source++) {
      const id = ids[source];
      if (!atOrAfter(id, this.floor[source])) return 'too_old';
    }
    for (let source = 0; source < this.options.shards; source++) {
      const id = ids[source];
      if (id !== undefined && !atOrAfter(this.processed[source], id)) return 'ahead';
    }
    return 'recoverable';
  }

  /**
   * Held positions of these devices, in stream order (by entry id; the source breaks ties), that pass
   * `accept`, come after `after` (per source; undefined: from the oldest held), are at or before
   * `upTo` (per source) and whose entry is not older than `fromMs`.
   */
  collect(
    deviceIds: Iterable<string>,
    accept: (position: HeldPosition) => boolean,
    range: { after?: readonly (EntryId | undefined)[]; upTo?: readonly (EntryId | undefined)[]; fromMs?: number },
  ): HeldPosition[] {
    const found: HeldPosition[] = [];
    const { after, upTo, fromMs } = range;
    const wanted = (position: HeldPosition): boolean => {
      if (fromMs !== undefined && position.id.ms < fromMs) return false;
      const from = after?.[position.source];
      return from === undefined || compareIds(position.id, from) > 0;
    };
    for (const deviceId of deviceIds) {
      const device = this.byDevice.get(deviceId);
      if (device === undefined) continue;
      const { queue } = device;
      // From one source alone the ids grow along the queue: the wanted positions are a tail of it,
      // found walking back from the newest (a resume wants the last seconds of a minute's history; a
      // reconnect storm asks it thousands of times). Mixed sources (an outage's live-only stream) are
      // not ordered among each other: every position is looked at.
      let first = 0;
      if (device.perSource.size === 1) {
        first = queue.length;
        while (first > 0 && wanted(queue.at(first - 1) as HeldPosition)) first--;
      }
      for (let i = first; i < queue.length; i++) {
        const position = queue.at(i) as HeldPosition;
        if (!wanted(position)) continue;
        if (upTo !== undefined && !atOrAfter(upTo[position.source], position.id)) continue;
        if (accept(position)) found.push(position);
      }
    }
    return found.sort((a, b) => compareIds(a.id, b.id) || a.source - b.source);
  }

  /** The processed ids now (a copy). */
  processedIds(): (EntryId | undefined)[] {
    return [...this.processed];
  }

  encode(ids: readonly (EntryId | undefined)[]): string {
    return encodeCursor(this.options.shards, ids);
  }

  private advance(source: number, id: EntryId): void {
    const current = this.processed[source];
    if (current !== undefined && compareIds(current, id) >= 0) return;
    this.processed[source] = id;
    this.encoded = undefined;
  }

  private evict(): void {
    const oldestKept = this.newestMs - this.options.windowMs;
    for (;;) {
      const oldest = this.fifo.peek();
      if (oldest === undefined) return;
      if (oldest.id.ms >= oldestKept && this.heldBytes <= this.options.maxBytes) return;
      this.fifo.shift();
      const device = this.byDevice.get(oldest.deviceId);
      if (device !== undefined) {
        device.queue.shift();
        const left = (device.perSource.get(oldest.source) ?? 1) - 1;
        if (left > 0) device.perSource.set(oldest.source, left);
        else device.perSource.delete(oldest.source);
        if (device.queue.length === 0) this.byDevice.delete(oldest.deviceId);
      }
      this.heldBytes -= HELD_POSITION_BYTES;
      if (atOrAfter(oldest.id, this.floor[oldest.source])) this.floor[oldest.source] = oldest.id;
    }
  }
}
