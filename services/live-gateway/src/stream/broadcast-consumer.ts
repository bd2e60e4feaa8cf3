import {
  decodeEntryFields,
  entryTraceparent,
  liveBroadcastGroup,
  parseEntries,
  parseReadReply,
  shardKeys,
  StreamEntryError,
  type RawStreamEntry,
} from '@pitwall/contract';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import type { Redis } from 'ioredis';
import { parseEntryId, type EntryId } from '../history/entry-id.js';
import type { GatewayMetrics } from '../metrics.js';
import { toLivePosition, type LivePosition } from '../protocol/position-json.js';

export interface BroadcastConsumerOptions {
  streamKey: string;
  shards: number;
  instanceId: string;
  blockMs: number;
  count: number;
  /** Entries read per shard from the tail at start for the latest-position cache (0: none). */
  warmTailEntries: number;
  /** How often the consumer shows it is alive even when the stream is quiet (see touch()). */
  touchIntervalMs: number;
}

export interface BroadcastConsumerDeps {
  /** For XGROUP, XREVRANGE: never blocked. */
  commands: Redis;
  /** Dedicated to the blocking XREADGROUP. */
  reader: Redis;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Positions read from the tail at start, newest first per shard (cache warming, not fan-out). */
  onWarm: (positions: LivePosition[]) => void;
  /** Positions just read, in stream order per shard. */
  onPositions: (positions: LivePosition[]) => void;
  /**
   * Reading of shard `source` starts right after `startId` (its group's start; undefined when Redis did
   * not say); `tail` is what warm-up read at or before it, newest first.
   */
  onStart?: (source: number, startId: EntryId | undefined, tail: readonly LivePosition[]) => void;
  /** Reading of every shard skipped entries: the group was lost and created again at the end. */
  onGap?: () => void;
}

const BACKOFF_MAX_MS = 2_000;

/**
 * Reads every shard in this pod's own group `live-broadcast-<INSTANCE_ID>`, created at `$` (only
 * what arrives from now on; a stale group of the same name is moved to `$`), with NOACK so nothing
 * accumulates in a pending list: live positions are worth nothing once late. One XREADGROUP covers
 * every shard, with a finite BLOCK and a bounded COUNT. On close the group is destroyed.
 */
export class BroadcastConsumer implements Service {
  readonly name = 'broadcast-consumer';
  readonly group: string;
  private readonly keys: string[];
  private readonly sourceOf: Map<string, number>;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private consecutiveErrors = 0;
  private lastTouchMs = 0;
  running = false;

  constructor(
    private readonly options: BroadcastConsumerOptions,
    private readonly deps: BroadcastConsumerDeps,
  ) {
    this.group = liveBroadcastGroup(options.instanceId);
    this.keys = shardKeys(options.streamKey, options.shards);
    this.sourceOf = new Map(this.keys.map((key, source) => [key, source]));
  }

  async start(): Promise<void> {
    await this.createGroups();
    await this.touch();
    await this.warm();
    this.running = true;
    this.loop = this.readLoop();
  }

  close = idempotent(async () => {
    this.stopping = true;
    // Abort the blocked read at once rather than waiting up to BLOCK ms.
    this.deps.reader.disconnect();
    await this.loop;
    this.running = false;
    await this.destroyGroups();
  });

  private async createGroups(): Promise<void> {
    for (const key of this.keys) {
      try {
        await this.deps.commands.call('XGROUP', 'CREATE', key, this.group, '$', 'MKSTREAM');
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('BUSYGROUP')) throw err;
        // A previous run of this pod left it: skip what it did not read, it is stale by now.
        await this.deps.commands.call('XGROUP', 'SETID', key, this.group, '$');
      }
    }
  }

  private async destroyGroups(): Promise<void> {
    for (const key of this.keys) {
      try {
        await this.deps.commands.call('XGROUP', 'DESTROY', key, this.group);
      } catch (err) {
        this.deps.logger.warn({ err, key, group: this.group }, 'could not destroy fan-out group; another pod will collect it');
      }
    }
  }

  /**
   * Reads each shard's tail up to where its group starts (what the group delivers comes after it, so
   * nothing is read twice): the latest-position cache and the history start from it.
   */
  private async warm(): Promise<void> {
    let warmed = 0;
    for (const [source, key] of this.keys.entries()) {
      const start = await this.groupStart(key);
      let positions: LivePosition[] = [];
      if (this.options.warmTailEntries > 0) {
        const end = start === undefined ? '+' : `${start.ms}-${start.seq}`;
        const reply = await this.deps.commands.callBuffer('XREVRANGE', key, end, '-', 'COUNT', this.options.warmTailEntries);
        positions = this.decode(parseEntries(reply), source);
        warmed += positions.length;
        this.deps.onWarm(positions);
      }
      this.deps.onStart?.(source, start, positions);
    }
    this.deps.logger.info({ positions: warmed, shards: this.keys.length }, 'latest-position cache warmed from the stream tail');
  }

  /** The last-delivered id of this pod's group on `key` (where its reading starts, before the first read). */
  private async groupStart(key: string): Promise<EntryId | undefined> {
    const reply: unknown = await this.deps.commands.call('XINFO', 'GROUPS', key);
    if (!Array.isArray(reply)) return undefined;
    for (const item of reply) {
      if (!Array.isArray(item)) continue;
      let name: unknown;
      let lastId: unknown;
      for (let i = 0; i + 1 < item.length; i += 2) {
        if (item[i] === 'name') name = item[i + 1];
        if (item[i] === 'last-delivered-id') lastId = item[i + 1];
      }
      if (name === this.group && typeof lastId === 'string') return parseEntryId(lastId);
    }
    return undefined;
  }

  private async readLoop(): Promise<void> {
    const { blockMs, count, instanceId } = this.options;
    const args = [
      'GROUP',
      this.group,
      instanceId,
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'NOACK',
      'STREAMS',
      ...this.keys,
      ...this.keys.map(() => '>'),
    ];
    while (!this.stopping) {
      try {
        const reply = await this.deps.reader.callBuffer('XREADGROUP', ...args);
        this.consecutiveErrors = 0;
        this.handle(reply);
        if (Date.now() - this.lastTouchMs >= this.options.touchIntervalMs) await this.touch();
      } catch (err) {
        if (this.stopping) break;
        await this.onReadError(err);
      }
    }
  }

  /**
   * Marks this pod's consumer as active on every shard, so that other pods' GC sees it alive. A
   * read of its own (always empty, NOACK) pending history: it creates the consumer and refreshes
   * its idle time, which Redis 7.0 does not do for a blocking read that returns nothing.
   */
  private async touch(): Promise<void> {
    await this.deps.reader.call(
      'XREADGROUP',
      'GROUP',
      this.group,
      this.options.instanceId,
      'COUNT',
      1,
      'STREAMS',
      ...this.keys,
      ...this.keys.map(() => '0'),
    );
    this.lastTouchMs = Date.now();
  }

  private handle(reply: unknown): void {
    const batches = parseReadReply(reply);
    if (batches.length === 0) return;
    const positions: LivePosition[] = [];
    let newestIdMs = 0;
    for (const batch of batches) {
      const last = batch.entries[batch.entries.length - 1];
      if (last !== undefined) newestIdMs = Math.max(newestIdMs, idTimeMs(last.id));
      for (const position of this.decode(batch.entries, this.sourceOf.get(batch.key))) positions.push(position);
    }
    if (newestIdMs > 0) this.deps.metrics.streamReadLag.set(Math.max(0, Date.now() - newestIdMs) / 1000);
    this.deps.metrics.positionsReceived.inc(positions.length);
    if (positions.length > 0) this.deps.onPositions(positions);
  }

  /** Decodes entries of the stream `source` (a cursor source), tagging each position with it and its entry id. */
  private decode(entries: readonly RawStreamEntry[], source: number | undefined): LivePosition[] {
    const positions: LivePosition[] = [];
    for (const entry of entries) {
      if (entry.fields.length === 0) continue;
      try {
        const position = toLivePosition(decodeEntryFields(entry.fields));
        position.traceparent = entryTraceparent(entry.fields);
        position.source = source;
        position.id = parseEntryId(entry.id);
        positions.push(position);
      } catch (err) {
        if (!(err instanceof StreamEntryError)) throw err;
        this.deps.metrics.invalidEntries.inc();
      }
    }
    return positions;
  }

  private async onReadError(err: unknown): Promise<void> {
    this.deps.metrics.streamReadErrors.inc();
    this.consecutiveErrors++;
    const message = err instanceof Error ? err.message : String(err);
    if (this.consecutiveErrors === 1) this.deps.logger.warn({ err: message }, 'stream read failed; retrying');
    if (message.startsWith('NOGROUP')) {
      // Redis lost it (restart without persistence) or another pod collected it by mistake.
      try {
        await this.createGroups();
        this.deps.onGap?.();
        this.deps.logger.warn({ group: this.group }, 'fan-out group was gone; created it again at $');
        return;
      } catch (createErr) {
        this.deps.logger.warn({ err: createErr }, 'could not re-create the fan-out group');
      }
    }
    const delay = Math.min(50 * 2 ** Math.min(this.consecutiveErrors, 6), BACKOFF_MAX_MS);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Milliseconds part of a stream entry id `<ms>-<seq>`. */
export function idTimeMs(id: string): number {
  const dash = id.indexOf('-');
  return Number(dash === -1 ? id : id.slice(0, dash));
}
