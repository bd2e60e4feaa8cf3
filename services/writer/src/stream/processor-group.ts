import { parseAutoClaimReply, parseReadReply, PROCESSOR_GROUP, type RawStreamBatch, type RawStreamEntry } from '@pitwall/contract';
import type { Redis } from 'ioredis';

/** An entry to park in the dead-letter stream, with why. */
export interface DeadLetter {
  /** Shard stream it came from. */
  key: string;
  entry: RawStreamEntry;
  reason: string;
  error: string;
}

/** Entries of several reads, per shard (what one XACK per shard acknowledges). */
export function countEntries(batches: readonly RawStreamBatch[]): number {
  let n = 0;
  for (const batch of batches) n += batch.entries.length;
  return n;
}

export interface GroupStats {
  key: string;
  /** Entries delivered to some consumer and not acknowledged yet. */
  pending: number;
  /** Entries not delivered to any consumer yet (undefined when Redis cannot tell). */
  lag: number | undefined;
}

export interface ConsumerInfo {
  name: string;
  pending: number;
  idleMs: number;
}

export interface ProcessorGroupOptions {
  /** Shard keys, in shard order. */
  keys: readonly string[];
  consumer: string;
  /** COUNT per shard of every read and claim. */
  count: number;
  blockMs: number;
  deadLetterKey: string;
  deadLetterMaxLen: number;
}

const ORIGINAL_FIELD_PREFIX = Buffer.from('orig.');

function flatRecord(reply: unknown): Map<string, unknown> {
  const record = new Map<string, unknown>();
  if (!Array.isArray(reply)) return record;
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const name: unknown = reply[i];
    if (typeof name === 'string') record.set(name, reply[i + 1]);
    else if (Buffer.isBuffer(name)) record.set(name.toString(), reply[i + 1]);
  }
  return record;
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value !== '') return Number(value);
  return undefined;
}

/** Throws the first error of a pipeline's results. */
function checkPipeline(results: [Error | null, unknown][] | null): unknown[] {
  if (results === null) throw new Error('redis pipeline was discarded');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

/**
 * The writer's side of consumer group `processor` on every shard. `reader` serves the blocking reads
 * (nothing else queues behind a BLOCK); `commands` serves acknowledgements, claims, dead letters
 * and statistics.
 */
export class ProcessorGroup {
  constructor(
    private readonly reader: Redis,
    private readonly commands: Redis,
    readonly options: ProcessorGroupOptions,
  ) {}

  /** Creates the group on every shard from the start of the stream (and the stream itself); an existing group is fine. */
  async ensureGroups(): Promise<void> {
    for (const key of this.options.keys) {
      try {
        await this.commands.call('XGROUP', ['CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM']);
      } catch (err) {
        if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
      }
    }
  }

  /**
   * Entries never delivered before, up to COUNT per shard, waiting at most BLOCK ms for the first.
   * Empty when none arrived in time.
   */
  async readNew(): Promise<RawStreamBatch[]> {
    const { keys, consumer, count, blockMs } = this.options;
    const reply = await this.reader.callBuffer('XREADGROUP', [
      'GROUP',
      PROCESSOR_GROUP,
      consumer,
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'STREAMS',
      ...keys,
      ...keys.map(() => '>'),
    ]);
    return parseReadReply(reply).filter((batch) => batch.entries.length > 0);
  }

  /**
   * This consumer's own pending entries after the given ids (per shard): what it had read but not
   * acknowledged when it last stopped. Entries deleted from the stream meanwhile come back without
   * fields. Returns the entries and the shards that have nothing more.
   */
  async readPending(after: ReadonlyMap<string, string>): Promise<{ batches: RawStreamBatch[]; exhausted: string[] }> {
    const keys = [...after.keys()];
    const reply = await this.reader.callBuffer('XREADGROUP', [
      'GROUP',
      PROCESSOR_GROUP,
      this.options.consumer,
      'COUNT',
      this.options.count,
      'STREAMS',
      ...keys,
      ...keys.map((k) => after.get(k) ?? '0'),
    ]);
    const batches = parseReadReply(reply).filter((batch) => batch.entries.length > 0);
    const withEntries = new Set(batches.map((b) => b.key));
    return { batches, exhausted: keys.filter((k) => !withEntries.has(k)) };
  }

  /**
   * Takes over entries of one shard pending longer than `minIdleMs` on any consumer (XAUTOCLAIM),
   * from `cursor`. Returns the entries, the cursor to continue from ('0-0' when the scan is complete)
   * and the ids that no longer exist in the stream (Redis drops those from the pending list).
   */
  async claim(key: string, cursor: string, minIdleMs: number): Promise<{ batch: RawStreamBatch; next: string; deleted: string[] }> {
    const reply = await this.commands.callBuffer('XAUTOCLAIM', [
      key,
      PROCESSOR_GROUP,
      this.options.consumer,
      minIdleMs,
      cursor,
      'COUNT',
      this.options.count,
    ]);
    const parsed = parseAutoClaimReply(reply);
    return { batch: { key, entries: parsed.entries }, next: parsed.next, deleted: parsed.deleted };
  }

  /** Acknowledges entries: one XACK per shard, in one round trip. */
  async ack(batches: readonly RawStreamBatch[]): Promise<number> {
    const idsByKey = new Map<string, string[]>();
    for (const { key, entries } of batches) {
      let ids = idsByKey.get(key);
      if (!ids) idsByKey.set(key, (ids = []));
      for (const entry of entries) ids.push(entry.id);
    }
    if (idsByKey.size === 0) return 0;
    const pipeline = this.commands.pipeline();
    for (const [key, ids] of idsByKey) pipeline.call('XACK', [key, PROCESSOR_GROUP, ...ids]);
    return checkPipeline(await pipeline.exec()).reduce<number>((sum, n) => sum + (asNumber(n) ?? 0), 0);
  }

  /**
   * Appends entries to the dead-letter stream (approximately capped), each with the reason, the
   * error, where it came from, and its original fields verbatim under `orig.<field>`.
   */
  async deadLetter(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const { deadLetterKey, deadLetterMaxLen, consumer } = this.options;
    const pipeline = this.commands.pipeline();
    for (const { key, entry, reason, error } of letters) {
      const original: Buffer[] = [];
      for (let i = 0; i + 1 < entry.fields.length; i += 2) {
        original.push(Buffer.concat([ORIGINAL_FIELD_PREFIX, entry.fields[i] as Buffer]), entry.fields[i + 1] as Buffer);
      }
      pipeline.call('XADD', [
        deadLetterKey,
        'MAXLEN',
        '~',
        deadLetterMaxLen,
        '*',
        'reason',
        reason,
        'error',
        error.slice(0, 1000),
        'source_stream',
        key,
        'source_id',
        entry.id,
        'consumer',
        consumer,
        ...original,
      ]);
    }
    checkPipeline(await pipeline.exec());
  }

  /** Pending and lag of the group on every shard (XINFO GROUPS). */
  async stats(): Promise<GroupStats[]> {
    const pipeline = this.commands.pipeline();
    for (const key of this.options.keys) pipeline.call('XINFO', ['GROUPS', key]);
    const replies = checkPipeline(await pipeline.exec());
    return this.options.keys.map((key, i) => {
      const groups: unknown = replies[i];
      const group = (Array.isArray(groups) ? groups : []).map(flatRecord).find((g) => g.get('name') === PROCESSOR_GROUP);
      return { key, pending: asNumber(group?.get('pending')) ?? 0, lag: asNumber(group?.get('lag')) };
    });
  }

  /** Consumers of the group on one shard (XINFO CONSUMERS). */
  async consumers(key: string): Promise<ConsumerInfo[]> {
    const reply: unknown = await this.commands.call('XINFO', ['CONSUMERS', key, PROCESSOR_GROUP]);
    return (Array.isArray(reply) ? reply : []).map(flatRecord).map((c) => ({
      name: String(c.get('name')),
      pending: asNumber(c.get('pending')) ?? 0,
      idleMs: asNumber(c.get('idle')) ?? 0,
    }));
  }

  /** Removes a consumer from the group on one shard; returns what it still had pending (lost from the list). */
  async deleteConsumer(key: string, name: string): Promise<number> {
    return asNumber(await this.commands.call('XGROUP', ['DELCONSUMER', key, PROCESSOR_GROUP, name])) ?? 0;
  }
}
