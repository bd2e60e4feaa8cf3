import { MAX_POSITION_ENTRY_BYTES, PROCESSOR_GROUP } from '@pitwall/contract';
import {
  encodeAck,
  encodeCommand,
  encodeGroupRead,
  parseAutoClaim,
  parseStreamRead,
  RespCursor,
  type ShardConnections,
  type StreamEntries,
} from '@pitwall/streams';

export interface GroupConsumerOptions {
  /** Shard keys this consumer reads, in shard order. */
  keys: readonly string[];
  /** Consumer name in group `processor` (INSTANCE_ID). */
  consumer: string;
  /** Largest COUNT per shard of every read and claim (WRITER_BATCH_SIZE). */
  count: number;
  /** Bytes one read of every shard may bring at most (WRITER_BATCH_MAX_BYTES): lowers COUNT to fit. */
  maxBytes: number;
  blockMs: number;
}

/**
 * Bytes of a stored entry in a stream reply beside its Position: its id, field names, a traceparent
 * (field `tp`) and the RESP framing of each.
 */
export const ENTRY_OVERHEAD_BYTES = 160;

/**
 * The COUNT per shard that keeps one reply within `maxBytes` when every entry is as large as a
 * stored entry may be (MAX_POSITION_ENTRY_BYTES + overhead), capped by `count`; at least 1.
 */
export function countForBytes(count: number, maxBytes: number, shards: number): number {
  return Math.max(1, Math.min(count, Math.floor(maxBytes / (shards * (MAX_POSITION_ENTRY_BYTES + ENTRY_OVERHEAD_BYTES)))));
}

/** Entries of several reads (what one XACK per shard acknowledges). */
export function countEntries(batches: readonly StreamEntries[]): number {
  let n = 0;
  for (const batch of batches) n += batch.length;
  return n;
}

/** A read of new entries of one shard, in flight or done. */
interface ShardRead {
  blocking: boolean;
  promise: Promise<void>;
  done: boolean;
  entries: StreamEntries[];
  error: Error | undefined;
}

/**
 * One pipeline's side of consumer group `processor`: reads, claims and acknowledgements, **one command
 * per shard** (a Redis Cluster refuses one command over keys of several slots, and each shard is its
 * own slot), on the writer's own connections that hand back raw replies (see resp.ts and
 * ShardConnections: a read connection per shard, so a shard's BLOCK never holds up another's, and an
 * acknowledgement connection per shard).
 *
 * Reading new entries keeps at most one read in flight per shard: readNew returns as soon as some
 * shard brought entries (or every shard came back empty), and a read still blocking on a quiet shard
 * stays in flight for the next call, so a quiet shard never delays a busy one.
 *
 * COUNT adapts to the bytes replies bring (WRITER_BATCH_MAX_BYTES shared by the shards): one reply
 * bigger than its share shrinks COUNT in proportion, one under half of it lets COUNT double back.
 */
export class GroupConsumer {
  /** COUNT per shard that fits WRITER_BATCH_MAX_BYTES with the largest stored entries. */
  readonly maxCount: number;
  /** COUNT per shard of the next read: maxCount, less after a reply bigger than its share of maxBytes. */
  private current: number;
  /** Bytes one shard's reply may bring. */
  private readonly shardBytes: number;
  private readonly inflight = new Map<string, ShardRead>();

  constructor(
    private readonly connections: ShardConnections,
    readonly options: GroupConsumerOptions,
  ) {
    this.maxCount = countForBytes(options.count, options.maxBytes, options.keys.length);
    this.current = this.maxCount;
    this.shardBytes = Math.max(1, Math.floor(options.maxBytes / Math.max(1, options.keys.length)));
  }

  /** COUNT per shard of the next read. */
  get count(): number {
    return this.current;
  }

  /**
   * Entries never delivered before, up to COUNT per shard, waiting at most BLOCK ms for the first
   * (or not at all when `block` is false). Empty when none arrived in time on any shard. `count` is
   * the COUNT it was read with (a read that brought fewer has caught up with the stream). A shard
   * whose read failed rejects the call (when no other shard brought entries); the next call reads it again.
   */
  async readNew(block = true): Promise<{ batches: StreamEntries[]; count: number }> {
    const count = this.current;
    for (const key of this.options.keys) if (!this.inflight.has(key)) this.startRead(key, block, count);
    for (;;) {
      const reads = [...this.inflight.values()];
      // Without BLOCK, every read just sent is waited for (they answer at once: one batch holds every
      // shard's entries, as one transaction); a read still blocking from an earlier call is not.
      // With BLOCK, the first shard that brings entries (or fails) ends the wait; so does every shard
      // coming back empty.
      const waiting = reads.filter((r) => !r.done && (block || !r.blocking));
      if (waiting.length === 0) break;
      if (block && reads.some((r) => r.done && (r.entries.length > 0 || r.error !== undefined))) {
        // The other shards' replies that arrived with it are taken along.
        await new Promise<void>((resolve) => setImmediate(resolve));
        break;
      }
      await Promise.race(waiting.map((r) => r.promise));
    }
    const batches: StreamEntries[] = [];
    let error: Error | undefined;
    for (const [key, read] of this.inflight) {
      if (!read.done) continue;
      this.inflight.delete(key);
      if (read.error !== undefined) error ??= read.error;
      else batches.push(...read.entries);
    }
    if (batches.length === 0 && error !== undefined) throw error;
    return { batches, count };
  }

  private startRead(key: string, block: boolean, count: number): void {
    const { consumer, blockMs } = this.options;
    const command = encodeGroupRead({ key, group: PROCESSOR_GROUP, consumer, count, blockMs: block ? blockMs : undefined });
    const read: ShardRead = { blocking: block, done: false, entries: [], error: undefined, promise: Promise.resolve() };
    read.promise = this.connections
      .connection(key, 'read')
      .send(command, block ? blockMs : 0)
      .then(
        (reply) => {
          this.observe(reply);
          read.entries = parseStreamRead(reply);
        },
        (err: unknown) => {
          read.error = err instanceof Error ? err : new Error(`stream read failed: ${String(err)}`);
          this.connections.failed(err);
        },
      )
      .finally(() => {
        read.done = true;
      });
    this.inflight.set(key, read);
  }

  /**
   * Sizes the next reads after a shard's reply: one bigger than its share of maxBytes (entries stored
   * before ingestion bounded them) shrinks COUNT in proportion; one under half of it lets COUNT double
   * back towards maxCount.
   */
  private observe(reply: Buffer): void {
    const budget = this.shardBytes;
    if (reply.length > budget) this.current = Math.max(1, Math.floor((this.current * budget) / reply.length));
    else if (reply.length * 2 <= budget && this.current < this.maxCount) this.current = Math.min(this.maxCount, this.current * 2);
  }

  /**
   * This consumer's own pending entries after the given ids (per shard): what it had read but not
   * acknowledged when it last stopped. Entries deleted from the stream meanwhile come back without
   * fields. Returns the entries and the shards that have nothing more.
   */
  async readPending(after: ReadonlyMap<string, string>): Promise<{ batches: StreamEntries[]; exhausted: string[] }> {
    const keys = [...after.keys()];
    // Not on the read connections: behind a read-ahead's BLOCK it would wait for that read to time out.
    const replies = await Promise.all(
      keys.map((key) =>
        this.send(
          key,
          encodeGroupRead({
            key,
            group: PROCESSOR_GROUP,
            consumer: this.options.consumer,
            count: this.current,
            after: after.get(key) ?? '0',
          }),
        ),
      ),
    );
    for (const reply of replies) this.observe(reply);
    const batches = replies.flatMap((reply) => parseStreamRead(reply));
    const withEntries = new Set(batches.filter((b) => b.length > 0).map((b) => b.key));
    return { batches, exhausted: keys.filter((k) => !withEntries.has(k)) };
  }

  /**
   * Takes over entries of one shard pending longer than `minIdleMs` on any consumer (XAUTOCLAIM),
   * from `cursor`. Returns the entries, the cursor to continue from ('0-0' when the scan is complete)
   * and the ids that no longer exist in the stream (Redis drops those from the pending list).
   */
  async claim(key: string, cursor: string, minIdleMs: number): Promise<{ entries: StreamEntries; next: string; deleted: string[] }> {
    const reply = await this.send(
      key,
      encodeCommand(['XAUTOCLAIM', key, PROCESSOR_GROUP, this.options.consumer, minIdleMs, cursor, 'COUNT', this.current]),
    );
    this.observe(reply);
    return parseAutoClaim(reply, key);
  }

  /** Acknowledges entries: one XACK per shard, sent together. Returns how many Redis acknowledged. */
  async ack(batches: readonly StreamEntries[]): Promise<number> {
    const byKey = new Map<string, StreamEntries[]>();
    for (const batch of batches) {
      if (batch.length === 0) continue;
      const list = byKey.get(batch.key);
      if (list) list.push(batch);
      else byKey.set(batch.key, [batch]);
    }
    const replies = await Promise.all([...byKey].map(([key, list]) => this.send(key, encodeAck(key, PROCESSOR_GROUP, list))));
    let acked = 0;
    for (const reply of replies) acked += new RespCursor(reply).integer('XACK reply');
    return acked;
  }

  /** A command on the shard's acknowledgement connection; a failure may mean the shard moved. */
  private async send(key: string, command: Buffer): Promise<Buffer> {
    try {
      return await this.connections.connection(key, 'ack').send(command);
    } catch (err) {
      this.connections.failed(err);
      throw err;
    }
  }
}
