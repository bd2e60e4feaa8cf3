import { PROCESSOR_GROUP } from '@pitwall/contract';
import type { RespConnection } from './resp-connection.js';
import { encodeCommand, RespCursor } from './resp.js';
import { encodeAck, parseAutoClaim, parseStreamRead, type StreamEntries } from './stream-entries.js';

export interface GroupConsumerOptions {
  /** Shard keys this consumer reads, in shard order. */
  keys: readonly string[];
  /** Consumer name in group `processor` (INSTANCE_ID). */
  consumer: string;
  /** COUNT per shard of every read and claim. */
  count: number;
  blockMs: number;
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
  /** The same two commands every time, encoded once: with BLOCK, and without (returns at once). */
  private readonly readNewBlocking: Buffer;
  private readonly readNewNow: Buffer;

  constructor(
    private readonly reads: RespConnection,
    private readonly acks: RespConnection,
    readonly options: GroupConsumerOptions,
  ) {
    const { keys, consumer, count, blockMs } = options;
    const read = (block: (string | number)[]) =>
      encodeCommand([
        'XREADGROUP',
        'GROUP',
        PROCESSOR_GROUP,
        consumer,
        'COUNT',
        count,
        ...block,
        'STREAMS',
        ...keys,
        ...keys.map(() => '>'),
      ]);
    this.readNewBlocking = read(['BLOCK', blockMs]);
    this.readNewNow = read([]);
  }

  /**
   * Entries never delivered before, up to COUNT per shard, waiting at most BLOCK ms for the first
   * (or not at all when `block` is false). Empty when none arrived in time.
   */
  async readNew(block = true): Promise<StreamEntries[]> {
    const reply = block ? await this.reads.send(this.readNewBlocking, this.options.blockMs) : await this.reads.send(this.readNewNow);
    return parseStreamRead(reply);
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
      this.options.count,
      'STREAMS',
      ...keys,
      ...keys.map((k) => after.get(k) ?? '0'),
    ]);
    // Not on `reads`: behind a read-ahead's BLOCK it would wait for that read to time out.
    const batches = parseStreamRead(await this.acks.send(command));
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
      encodeCommand(['XAUTOCLAIM', key, PROCESSOR_GROUP, this.options.consumer, minIdleMs, cursor, 'COUNT', this.options.count]),
    );
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
