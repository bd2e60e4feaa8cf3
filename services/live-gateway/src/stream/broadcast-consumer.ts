import {
  decodeEntryFields,
  entryTraceparent,
  isPositionField,
  liveBroadcastGroup,
  liveShardKeys,
  MAX_POSITION_ENTRY_BYTES,
  parseEntries,
  PositionReader,
  shardKeys,
  StreamEntryError,
  type RawStreamEntry,
} from '@pitwall/contract';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import {
  backoffDelay,
  createGroup,
  encodeCommand,
  encodeGroupRead,
  groupsOf,
  parseStreamRead,
  redisErrorKind,
  type ShardConnections,
  type StreamClient,
  type StreamEntries,
} from '@pitwall/streams';
import { parseEntryId, type EntryId } from '../history/entry-id.js';
import type { GatewayMetrics } from '../metrics.js';
import { readLivePosition, toLivePosition, type LivePosition } from '../protocol/position-json.js';

export interface BroadcastConsumerOptions {
  streamKey: string;
  shards: number;
  instanceId: string;
  blockMs: number;
  count: number;
  /** Entries read per shard from the tail at start for the latest-position cache (0: none). */
  warmTailEntries: number;
  /** Bytes of entries the warm-up reads at most, over every shard (GATEWAY_WARM_MAX_BYTES). */
  warmMaxBytes: number;
  /** The warm-up stops after this long, warmed or not (GATEWAY_WARM_TIMEOUT_MS). */
  warmTimeoutMs: number;
  /** How often the consumer shows it is alive even when the stream is quiet (see touch()). */
  touchIntervalMs: number;
}

export interface BroadcastConsumerDeps {
  /** For XGROUP, XREVRANGE, XINFO and the touches: never blocked. */
  commands: StreamClient;
  /**
   * The blocking reads: per shard a connection (role `read`) for its XREADGROUP and one (role `live`)
   * for the XREAD of its live-only stream, to the node serving the shard; replies read in place. The
   * consumer closes them on close (that aborts a blocked read at once).
   */
  connections: ShardConnections;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Positions read from the tail at start, newest first per shard (cache warming, not fan-out). */
  onWarm: (positions: LivePosition[]) => void;
  /** Positions just read, in stream order per source (shard n: source n; its live-only stream: shards + n). */
  onPositions: (positions: LivePosition[]) => void;
  /**
   * Reading of shard `source` starts right after `startId` (its group's start; undefined when Redis did
   * not say); `tail` is what warm-up read at or before it, newest first.
   */
  onStart?: (source: number, startId: EntryId | undefined, tail: readonly LivePosition[]) => void;
  /** Reading of shard `source` skipped entries: its group was lost and created again at the end. */
  onGap?: (source: number) => void;
}

/** Entries of one XREVRANGE of the warm-up: ~1 MiB with the largest stored entries. */
const WARM_CHUNK_ENTRIES = 256;
/** Bytes of a stored entry beside its Position (id, field names, traceparent). */
const ENTRY_OVERHEAD_BYTES = 160;

/** Where the warm-up of one shard is: the id to read below, what it read. */
interface WarmCursor {
  key: string;
  source: number;
  start: EntryId | undefined;
  end: string;
  entries: number;
  bytes: number;
  done: boolean;
  /** Its tail, newest first. */
  positions: LivePosition[];
}

/**
 * Reads every shard in this pod's own group `live-broadcast-<INSTANCE_ID>`, created at `$` (only
 * what arrives from now on; a stale group of the same name is moved to `$`), with NOACK so nothing
 * accumulates in a pending list: live positions are worth nothing once late. One XREADGROUP covers
 * every shard, with a finite BLOCK and a bounded COUNT. On close the group is destroyed.
 *
 * Beside it, the live-only streams (`liveShardKey`: records ingestion could not admit while the
 * durable path is at its cap, a PostgreSQL outage) with a plain XREAD from their tail at start (no
 * group: nothing to acknowledge or collect), on a connection of their own; their positions are of
 * source shards + n. Both feed the same onPositions; the fan-out forwards a device's position only
 * when it is newer than the last one (LatestPositions), so the device's resends into the durable
 * stream later show nothing twice.
 */
export class BroadcastConsumer implements Service {
  readonly name = 'broadcast-consumer';
  readonly group: string;
  private readonly keys: string[];
  private readonly liveKeys: string[];
  /** Per live-only stream, the id the next XREAD reads after. */
  private readonly liveIds: string[];
  /** The in-place Position decoder (one for every loop: a read is synchronous). */
  private readonly reader = new PositionReader();
  private stopping = false;
  private loops: Promise<void>[] = [];
  running = false;

  constructor(
    private readonly options: BroadcastConsumerOptions,
    private readonly deps: BroadcastConsumerDeps,
  ) {
    this.group = liveBroadcastGroup(options.instanceId);
    this.keys = shardKeys(options.streamKey, options.shards);
    this.liveKeys = liveShardKeys(options.streamKey, options.shards);
    this.liveIds = this.liveKeys.map(() => '$');
  }

  async start(): Promise<void> {
    await this.createGroups();
    for (const shard of this.keys.keys()) await this.touch(shard);
    await this.startLiveIds();
    await this.warm();
    this.running = true;
    // Each shard and each live-only stream by a loop of its own: one command per key (a Redis Cluster
    // refuses one over several slots), and a quiet shard's BLOCK never holds up a busy one.
    this.loops = [...this.keys.map((_, shard) => this.readLoop(shard)), ...this.liveKeys.map((_, shard) => this.readLiveLoop(shard))];
  }

  close = idempotent(async () => {
    this.stopping = true;
    // Abort the blocked reads at once rather than waiting up to BLOCK ms.
    await this.deps.connections.close();
    await Promise.all(this.loops);
    this.running = false;
    await this.destroyGroups();
  });

  private async createGroups(keys: readonly string[] = this.keys): Promise<void> {
    for (const key of keys) {
      if ((await createGroup(this.deps.commands, key, this.group, { start: '$' })) === 'exists') {
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
   * nothing is read twice): the latest-position cache and the history start from it. Newest first,
   * in chunks of WARM_CHUNK_ENTRIES taken from each shard in turn: at most GATEWAY_WARM_TAIL_ENTRIES
   * per shard, GATEWAY_WARM_MAX_BYTES over all (each shard its share) and GATEWAY_WARM_TIMEOUT_MS.
   * One chunk of entries is in memory at a time (about 1 MiB with the largest stored entries).
   */
  private async warm(): Promise<void> {
    const { warmTailEntries, warmMaxBytes, warmTimeoutMs } = this.options;
    const started = Date.now();
    const shardBytes = Math.max(1, Math.floor(warmMaxBytes / this.keys.length));
    const chunk = Math.max(1, Math.min(WARM_CHUNK_ENTRIES, Math.floor(shardBytes / (MAX_POSITION_ENTRY_BYTES + ENTRY_OVERHEAD_BYTES))));
    const cursors: WarmCursor[] = [];
    for (const [source, key] of this.keys.entries()) {
      const start = await this.groupStart(key);
      const end = start === undefined ? '+' : `${start.ms}-${start.seq}`;
      cursors.push({ key, source, start, end, entries: 0, bytes: 0, done: warmTailEntries === 0, positions: [] });
    }
    let warmed = 0;
    let timedOut = false;
    while (!timedOut && cursors.some((c) => !c.done)) {
      for (const cursor of cursors) {
        if (cursor.done) continue;
        if (Date.now() - started >= warmTimeoutMs) {
          timedOut = true;
          break;
        }
        const count = Math.min(chunk, warmTailEntries - cursor.entries);
        const entries = parseEntries(await this.deps.commands.callBuffer('XREVRANGE', cursor.key, cursor.end, '-', 'COUNT', count));
        let bytes = 0;
        for (const entry of entries) for (const field of entry.fields) bytes += field.length;
        cursor.bytes += bytes;
        cursor.entries += entries.length;
        this.deps.metrics.warmBytes.inc(bytes);
        const last = entries.at(-1);
        if (last !== undefined) cursor.end = `(${last.id}`;
        cursor.done = entries.length < count || cursor.entries >= warmTailEntries || cursor.bytes >= shardBytes;
        const positions = this.decode(entries, cursor.source);
        for (const position of positions) cursor.positions.push(position);
        warmed += positions.length;
        this.deps.onWarm(positions);
      }
    }
    for (const cursor of cursors) this.deps.onStart?.(cursor.source, cursor.start, cursor.positions);
    const bytes = cursors.reduce((sum, c) => sum + c.bytes, 0);
    const fields = { positions: warmed, bytes, shards: this.keys.length, ms: Date.now() - started };
    if (timedOut) this.deps.logger.warn(fields, 'latest-position cache warm-up stopped at GATEWAY_WARM_TIMEOUT_MS');
    else this.deps.logger.info(fields, 'latest-position cache warmed from the stream tail');
  }

  /** Each live-only stream is read from its tail as of now (its newest id; 0-0 while it does not exist). */
  private async startLiveIds(): Promise<void> {
    for (const [i, key] of this.liveKeys.entries()) {
      const newest = parseEntries(await this.deps.commands.callBuffer('XREVRANGE', key, '+', '-', 'COUNT', 1))[0];
      this.liveIds[i] = newest?.id ?? '0-0';
    }
  }

  /** Plain XREAD of one shard's live-only stream, after the last id read: no group, nothing to acknowledge. */
  private async readLiveLoop(shard: number): Promise<void> {
    const { blockMs, count, shards } = this.options;
    const key = this.liveKeys[shard] as string;
    let errors = 0;
    while (!this.stopping) {
      try {
        const command = encodeCommand(['XREAD', 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', key, this.liveIds[shard] ?? '$']);
        const reply = await this.deps.connections.connection(key, 'live').send(command, blockMs);
        errors = 0;
        const positions: LivePosition[] = [];
        for (const batch of parseStreamRead(reply)) {
          this.liveIds[shard] = batch.lastId();
          this.decodeBatch(batch, shards + shard, positions);
        }
        this.deps.metrics.livePositionsReceived.inc(positions.length);
        if (positions.length > 0) this.deps.onPositions(positions);
      } catch (err) {
        if (this.stopping) break;
        this.deps.connections.failed(err);
        this.deps.metrics.streamReadErrors.inc();
        errors++;
        if (errors === 1)
          this.deps.logger.warn({ err: err instanceof Error ? err.message : String(err), shard }, 'live-only stream read failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(errors - 1)));
      }
    }
  }

  /** The last-delivered id of this pod's group on `key` (where its reading starts, before the first read). */
  private async groupStart(key: string): Promise<EntryId | undefined> {
    const group = (await groupsOf(this.deps.commands, key))?.find((g) => g.name === this.group);
    return group === undefined ? undefined : parseEntryId(group.lastDeliveredId);
  }

  private async readLoop(shard: number): Promise<void> {
    const { blockMs, count, instanceId } = this.options;
    const key = this.keys[shard] as string;
    const command = encodeGroupRead({ key, group: this.group, consumer: instanceId, count, blockMs, noAck: true });
    let consecutiveErrors = 0;
    let lastTouchMs = Date.now();
    while (!this.stopping) {
      try {
        const reply = await this.deps.connections.connection(key, 'read').send(command, blockMs);
        consecutiveErrors = 0;
        this.handle(reply, shard);
        if (Date.now() - lastTouchMs >= this.options.touchIntervalMs) {
          await this.touch(shard);
          lastTouchMs = Date.now();
        }
      } catch (err) {
        if (this.stopping) break;
        this.deps.connections.failed(err);
        await this.onReadError(err, shard, ++consecutiveErrors);
      }
    }
  }

  /**
   * Marks this pod's consumer as active on a shard, so that other pods' GC sees it alive. A read of
   * its own (always empty, NOACK) pending history: it creates the consumer and refreshes its idle
   * time, which Redis 7.0 does not do for a blocking read that returns nothing. A consumer is its
   * name, not a connection: the commands client does it.
   */
  private async touch(shard: number): Promise<void> {
    await this.deps.commands.call(
      'XREADGROUP',
      'GROUP',
      this.group,
      this.options.instanceId,
      'COUNT',
      1,
      'STREAMS',
      this.keys[shard] as string,
      '0',
    );
  }

  private handle(reply: Buffer, shard: number): void {
    const batches = parseStreamRead(reply);
    if (batches.length === 0) return;
    const positions: LivePosition[] = [];
    let newestIdMs = 0;
    for (const batch of batches) {
      newestIdMs = Math.max(newestIdMs, idTimeMs(batch.lastId()));
      this.decodeBatch(batch, shard, positions);
    }
    if (newestIdMs > 0) this.deps.metrics.streamReadLag.set(Math.max(0, Date.now() - newestIdMs) / 1000);
    this.deps.metrics.positionsReceived.inc(positions.length);
    if (positions.length > 0) this.deps.onPositions(positions);
  }

  /** Decodes the entries of one read of the stream `source` in place into `positions`, tagged with their source and entry id. */
  private decodeBatch(batch: StreamEntries, source: number, positions: LivePosition[]): void {
    const { reply } = batch;
    for (let i = 0; i < batch.length; i++) {
      if (!batch.exists(i)) continue;
      const start = batch.positionStart(i);
      const position = this.decodeEntry(start < 0 ? undefined : reply, start, batch.positionEnd(i), () => batch.fields(i));
      if (position === undefined) continue;
      position.traceparent = batch.traceparent(i);
      position.source = source;
      position.id = parseEntryId(batch.id(i));
      positions.push(position);
    }
    // The reader must not keep the reply alive.
    this.reader.release();
  }

  /** Decodes entries read with ioredis (the warm-up's XREVRANGE), tagged with their source (a cursor source) and entry id. */
  private decode(entries: readonly RawStreamEntry[], source: number | undefined): LivePosition[] {
    const positions: LivePosition[] = [];
    for (const entry of entries) {
      const { fields } = entry;
      if (fields.length === 0) continue;
      let value: Buffer | undefined;
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (isPositionField(fields[i])) {
          value = fields[i + 1];
          break;
        }
      }
      const position = this.decodeEntry(value, 0, value?.length ?? 0, () => fields);
      if (position === undefined) continue;
      position.traceparent = entryTraceparent(fields);
      position.source = source;
      position.id = parseEntryId(entry.id);
      positions.push(position);
    }
    this.reader.release();
    return positions;
  }

  /**
   * The position in bytes[start, end) (field `p`), read in place; anything the fast reader does not
   * take is decoded from the entry's fields by the full decoder, which throws on what is not a
   * Position: counted, and undefined.
   */
  private decodeEntry(bytes: Buffer | undefined, start: number, end: number, fields: () => readonly Buffer[]): LivePosition | undefined {
    const position = bytes === undefined ? undefined : readLivePosition(this.reader, bytes, start, end);
    if (position !== undefined) return position;
    try {
      return toLivePosition(decodeEntryFields(fields()));
    } catch (err) {
      if (!(err instanceof StreamEntryError)) throw err;
      this.deps.metrics.invalidEntries.inc();
      return undefined;
    }
  }

  private async onReadError(err: unknown, shard: number, consecutiveErrors: number): Promise<void> {
    this.deps.metrics.streamReadErrors.inc();
    const message = err instanceof Error ? err.message : String(err);
    if (consecutiveErrors === 1) this.deps.logger.warn({ err: message, shard }, 'stream read failed; retrying');
    if (redisErrorKind(err) === 'nogroup') {
      // Redis lost it (restart without persistence) or another pod collected it by mistake.
      try {
        await this.createGroups([this.keys[shard] as string]);
        this.deps.onGap?.(shard);
        this.deps.logger.warn({ group: this.group }, 'fan-out group was gone; created it again at $');
        return;
      } catch (createErr) {
        this.deps.logger.warn({ err: createErr }, 'could not re-create the fan-out group');
      }
    }
    await new Promise((resolve) => setTimeout(resolve, backoffDelay(consecutiveErrors - 1)));
  }
}

/** Milliseconds part of a stream entry id `<ms>-<seq>`. */
export function idTimeMs(id: string): number {
  const dash = id.indexOf('-');
  return Number(dash === -1 ? id : id.slice(0, dash));
}
