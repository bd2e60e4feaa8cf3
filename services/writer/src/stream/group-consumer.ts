import { MAX_POSITION_ENTRY_BYTES, PROCESSOR_GROUP } from '@pitwall/contract';
import type { RespConnection } from './resp-connection.js';
import { encodeCommand, RespCursor } from './resp.js';
import { encodeAck, parseAutoClaim, parseStreamRead, type StreamEntries } from './stream-entries.js';

export interface GroupConsumerOptions {
  /** Shard keys this consumer reads, in shard order. */
  keys: readonly string[];
  /** Consumer name in group `processor` (INSTANCE_ID). */
  consumer: string;
  /** Largest COUNT per shard of every read and claim (WRITER_BATCH_SIZE). */
  count: number;
  /** Bytes one reply may bring at most (WRITER_BATCH_MAX_BYTES): lowers COUNT to fit. */
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

/**
 * One pipeline's side of consumer group `processor`: reads, claims and acknowledgements, on two
 * connections of its own that hand back raw replies (see resp.ts). `reads` serves the blocking reads
 * (nothing else queues behind a BLOCK); `acks` serves acknowledgements, claims and re-reads of pending entries.
 */
export class GroupConsumer {
  /** COUNT per shard that fits WRITER_BATCH_MAX_BYTES with the largest stored entries. */
  readonly maxCount: number;
  /** COUNT per shard of the next read: maxCount, less after a reply bigger than maxBytes. */
  private current: number;
  /** The read of new entries, encoded once per COUNT: with BLOCK, and without (returns at once). */
  private encodedCount = 0;
  private readNewBlocking: Buffer = Buffer.alloc(0);
  private readNewNow: Buffer = Buffer.alloc(0);

  constructor(
    private readonly reads: RespConnection,
    private readonly acks: RespConnection,
    readonly options: GroupConsumerOptions,
  ) {
    this.maxCount = countForBytes(options.count, options.maxBytes, options.keys.length);
    this.current = this.maxCount;
  }

  /** COUNT per shard of the next read. */
  get count(): number {
    return this.current;
  }

  /**
   * Entries never delivered before, up to COUNT per shard, waiting at most BLOCK ms for the first
   * (or not at all when `block` is false). Empty when none arrived in time. `count` is the COUNT it
   * was read with (a read that brought fewer has caught up with the stream).
   */
  async readNew(block = true): Promise<{ batches: StreamEntries[]; count: number }> {
    const count = this.current;
    if (count !== this.encodedCount) {
      const { keys, consumer, blockMs } = this.options;
      const read = (extra: (string | number)[]) =>
        encodeCommand([
          'XREADGROUP',
          'GROUP',
          PROCESSOR_GROUP,
          consumer,
          'COUNT',
          count,
          ...extra,
          'STREAMS',
          ...keys,
          ...keys.map(() => '>'),
        ]);
      this.readNewBlocking = read(['BLOCK', blockMs]);
      this.readNewNow = read([]);
      this.encodedCount = count;
    }
    const reply = block ? await this.reads.send(this.readNewBlocking, this.options.blockMs) : await this.reads.send(this.readNewNow);
    this.observe(reply);
    return { batches: parseStreamRead(reply), count };
  }

  /**
   * Sizes the next reads after a reply: one bigger than maxBytes (entries stored before ingestion
   * bounded them) shrinks COUNT in proportion; one under half of it lets COUNT double back towards
   * maxCount.
   */
  private observe(reply: Buffer): void {
    const { maxBytes } = this.options;
    if (reply.length > maxBytes) this.current = Math.max(1, Math.floor((this.current * maxBytes) / reply.length));
    else if (reply.length * 2 <= maxBytes && this.current < this.maxCount) this.current = Math.min(this.maxCount, this.current * 2);
  }

  /**
   * This consumer's own pending entries after the given ids (per shard): what it had read but not
   * acknowledged when it last stopped. Entries deleted from the stream meanwhile come back without
   * fields. Returns the entries and the shards that have nothing more.
   */
  async readPending(after: ReadonlyMap<string, string>): Promise<{ batches: StreamEntries[]; exhausted: string[] }> {
    const keys = [...after.keys()];
    const command = encodeCommand([
      'XREADGROUP',
      'GROUP',
      PROCESSOR_GROUP,
      this.options.consumer,
      'COUNT',
      this.current,
      'STREAMS',
      ...keys,
      ...keys.map((k) => after.get(k) ?? '0'),
    ]);
    // Not on `reads`: behind a read-ahead's BLOCK it would wait for that read to time out.
    const reply = await this.acks.send(command);
    this.observe(reply);
    const batches = parseStreamRead(reply);
    const withEntries = new Set(batches.map((b) => b.key));
    return { batches, exhausted: keys.filter((k) => !withEntries.has(k)) };
  }

  /**
   * Takes over entries of one shard pending longer than `minIdleMs` on any consumer (XAUTOCLAIM),
   * from `cursor`. Returns the entries, the cursor to continue from ('0-0' when the scan is complete)
   * and the ids that no longer exist in the stream (Redis drops those from the pending list).
   */
  async claim(key: string, cursor: string, minIdleMs: number): Promise<{ entries: StreamEntries; next: string; deleted: string[] }> {
    const reply = await this.acks.send(
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
    const replies = await Promise.all([...byKey].map(([key, list]) => this.acks.send(encodeAck(key, PROCESSOR_GROUP, list))));
    let acked = 0;
    for (const reply of replies) acked += new RespCursor(reply).integer('XACK reply');
    return acked;
  }
}
