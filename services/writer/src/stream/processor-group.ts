import {
  DEAD_LETTER_ORIGINAL_MAX_BYTES,
  DEAD_LETTER_ORIGINAL_PREFIX,
  DEAD_LETTER_REASON_FIELD,
  PROCESSOR_GROUP,
  type RawStreamEntry,
} from '@pitwall/contract';
import { consumersOf, createGroup, groupStates, type ConsumerInfo, type StreamClient } from '@pitwall/streams';

/** An entry to park in the dead-letter stream, with why. */
export interface DeadLetter {
  /** Shard stream it came from. */
  key: string;
  entry: RawStreamEntry;
  reason: string;
  error: string;
}

export interface GroupStats {
  key: string;
  /** Entries delivered to some consumer and not acknowledged yet. */
  pending: number;
  /** Entries not delivered to any consumer yet (estimated when Redis gives no lag, see shardBacklog). */
  lag: number;
}

export type { ConsumerInfo };

export interface ProcessorGroupOptions {
  /** Shard keys, in shard order. */
  keys: readonly string[];
  /** This writer's consumer name (INSTANCE_ID), recorded with its dead letters. */
  consumer: string;
  deadLetterKey: string;
  deadLetterMaxLen: number;
}

const ORIGINAL_FIELD_PREFIX = Buffer.from(DEAD_LETTER_ORIGINAL_PREFIX);

/**
 * An entry's fields as a dead letter keeps them: `orig.<field>` and its value, the values cut once
 * `maxBytes` of them are kept (DEAD_LETTER_ORIGINAL_MAX_BYTES, contract), so one dead letter costs
 * about that much whatever the entry held. Returns the fields and, when cut, the values' original size.
 */
export function originalFields(
  fields: readonly Buffer[],
  maxBytes = DEAD_LETTER_ORIGINAL_MAX_BYTES,
): { fields: Buffer[]; cutFrom: number | undefined } {
  const kept: Buffer[] = [];
  let budget = maxBytes;
  let total = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1] as Buffer;
    total += value.length;
    const part = value.subarray(0, budget);
    budget -= part.length;
    kept.push(Buffer.concat([ORIGINAL_FIELD_PREFIX, fields[i] as Buffer]), part);
  }
  return { fields: kept, cutFrom: total > maxBytes ? total : undefined };
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
 * Consumer group `processor` on every shard, for what is not on a pipeline's hot path: creating the
 * group, dead letters, statistics and removing idle consumers (ioredis). Reads, claims and
 * acknowledgements go through GroupConsumer.
 */
export class ProcessorGroup {
  constructor(
    private readonly commands: StreamClient,
    readonly options: ProcessorGroupOptions,
  ) {}

  /** Creates the group on every shard from the start of the stream (and the stream itself); an existing group is fine. */
  async ensureGroups(): Promise<void> {
    for (const key of this.options.keys) await createGroup(this.commands, key, PROCESSOR_GROUP, { start: '0' });
  }

  /**
   * Appends entries to the dead-letter stream (approximately capped), each with the reason, the
   * error, where it came from, and its original fields under `orig.<field>`, their values cut after
   * DEAD_LETTER_ORIGINAL_MAX_BYTES (then `orig_bytes` tells their original size): the stream is
   * bounded in bytes, about MAXLEN x (that + 1 KiB of error and metadata).
   */
  async deadLetter(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const { deadLetterKey, deadLetterMaxLen, consumer } = this.options;
    const pipeline = this.commands.pipeline();
    for (const { key, entry, reason, error } of letters) {
      const { fields: original, cutFrom } = originalFields(entry.fields);
      if (cutFrom !== undefined) original.push(Buffer.from('orig_bytes'), Buffer.from(String(cutFrom)));
      pipeline.call('XADD', [
        deadLetterKey,
        'MAXLEN',
        '~',
        deadLetterMaxLen,
        '*',
        DEAD_LETTER_REASON_FIELD,
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

  /**
   * Pending and lag of the group on every shard that answered, from the same backlog measure as
   * ingestion's admission (@pitwall/streams shardBacklog: lag + pending), one round trip per shard.
   */
  async stats(): Promise<GroupStats[]> {
    const states = await groupStates(this.commands, this.options.keys, PROCESSOR_GROUP);
    const stats: GroupStats[] = [];
    for (const state of states) {
      if (state instanceof Error) continue;
      const pending = state.group?.pending ?? 0;
      stats.push({ key: state.key, pending, lag: Math.max(0, state.backlog.backlog - pending) });
    }
    return stats;
  }

  /** Consumers of the group on one shard (XINFO CONSUMERS). */
  async consumers(key: string): Promise<ConsumerInfo[]> {
    return consumersOf(this.commands, key, PROCESSOR_GROUP);
  }

  /** Removes a consumer from the group on one shard; returns what it still had pending (lost from the list). */
  async deleteConsumer(key: string, name: string): Promise<number> {
    return Number(await this.commands.call('XGROUP', ['DELCONSUMER', key, PROCESSOR_GROUP, name]));
  }
}
