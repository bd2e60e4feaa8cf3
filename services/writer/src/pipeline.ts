import { setTimeout as sleep } from 'node:timers/promises';
import { StreamEntryError } from '@pitwall/contract';
import type { Logger } from '@pitwall/platform';
import { backoffDelay, redisErrorKind, type StreamEntries } from '@pitwall/streams';
import { BatchAbandonedError } from './batch-abandoned-error.js';
import { BatchTrace, MAX_TRACED_POSITIONS } from './batch-trace.js';
import type { EntrySource, WriterMetrics } from './metrics.js';
import { InvalidPositionError } from './store/invalid-position-error.js';
import { describePgError } from './store/pg-errors.js';
import { CopyBatchBuilder, rowFromTuple, type BatchRow, type EncodedBatch } from './store/copy-batch.js';
import { addStreamEntry } from './store/entry-row.js';
import type { PositionRow } from './store/position-row.js';
import type { PositionStore, WritePath } from './store/position-store.js';
import { countEntries, type GroupConsumer } from './stream/group-consumer.js';
import type { DeadLetter, ProcessorGroup } from './stream/processor-group.js';

export interface PipelineOptions {
  /** The shards this pipeline owns (consumer group `processor`, consumer INSTANCE_ID): reads, claims, acks. */
  consumer: GroupConsumer;
  /** The same shards' group: creating it, dead letters, removing idle consumers. */
  group: ProcessorGroup;
  store: PositionStore;
  metrics: WriterMetrics;
  logger: Logger;
  /** Aborted when the writer shuts down. */
  stop: AbortSignal;
  claimIdleMs: number;
  claimIntervalMs: number;
  /** 0 keeps idle consumers. */
  consumerExpiryMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /** Path of entries read for the first time (WRITER_WRITE_PATH). */
  newEntryPath?: WritePath;
  /**
   * positions_latest moves forward at most this often (WRITER_LATEST_INTERVAL_MS), in the
   * transaction of the batch that is due, and entries are acknowledged only after it: batches in
   * between commit their rows only. 0 upserts it in every batch.
   */
  latestIntervalMs?: number;
  /** Acknowledgements held for positions_latest at most (entries); beyond it the next batch flushes. */
  maxHeldEntries?: number;
  /**
   * The same in bytes (the held entries' replies and encoded rows stay in memory until then): twice
   * WRITER_BATCH_MAX_BYTES.
   */
  maxHeldBytes?: number;
  /**
   * After a read that came back short (the pipeline has caught up with the stream), the next read
   * starts at least this long after it (WRITER_BATCH_WAIT_MS), so a steady trickle of positions is
   * written in a few larger transactions instead of one per read. 0 reads again at once.
   */
  batchWaitMs?: number;
}

type Operation = 'postgres' | 'redis';

/** A row waiting for positions_latest: where its tuple is. */
interface LatestRow extends BatchRow {
  copyData: Buffer;
}

/**
 * Folds a batch's rows (but `skip`) into the newest row per device (in place). Backwards: rows of a
 * device mostly arrive in time order, so its newest comes first and the others are skipped without
 * allocating.
 */
function mergeLatest(into: Map<string, LatestRow>, batch: EncodedBatch, skip?: ReadonlySet<number>): Map<string, LatestRow> {
  const { deviceIds, recordedAtMs, copyData } = batch;
  for (let i = batch.length - 1; i >= 0; i--) {
    if (skip?.has(i) === true) continue;
    const deviceId = deviceIds[i] as string;
    const recorded = recordedAtMs[i] as number;
    const seen = into.get(deviceId);
    if (seen === undefined || seen.recordedAtMs < recorded) {
      into.set(deviceId, { deviceId, recordedAtMs: recorded, start: batch.starts[i] as number, end: batch.ends[i] as number, copyData });
    }
  }
  return into;
}

function materialize(rows: Iterable<LatestRow>): PositionRow[] {
  return Array.from(rows, (row) => rowFromTuple(row.copyData, row));
}

/** A batch decoded, validated and encoded, ready for its transaction. */
interface PreparedBatch {
  source: EntrySource;
  /** What was read, per shard (acknowledged together). */
  batches: StreamEntries[];
  size: number;
  /** COUNT per shard it was read with: fewer entries on every shard means the stream is caught up. */
  readCount: number;
  /** Bytes it keeps in memory: its replies and its encoded rows. */
  bytes: number;
  encoded: EncodedBatch | undefined;
  /** Read batch and entry index of each row, by row index. */
  rowBatches: Uint16Array;
  rowEntries: Int32Array;
  letters: DeadLetter[];
  /** Pending entries whose stream entry was deleted (nil fields). */
  trimmed: number;
  /** When the read of new entries that brought it was sent (0 for other sources). */
  readStartedAtMs: number;
  /** Its trace when it holds sampled positions; ended once its entries are acknowledged. */
  trace: BatchTrace | undefined;
}

/** Batches read and prepared ahead of the one in its transaction. */
const READ_AHEAD = 2;
/** Entries decoded between two yields to the event loop. */
const PREPARE_SLICE = 256;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * One pipeline of the writer over its shards of consumer group `processor`: first its own pending
 * entries (left from a previous run under the same INSTANCE_ID), then new entries, with a claim round
 * for entries of dead consumers every WRITER_CLAIM_INTERVAL_MS. Per batch: dead letters first, then
 * one transaction, then one XACK per shard, so an entry is acknowledged only once its row is
 * committed (and positions_latest holds it) or it is parked in the dead-letter stream. The next
 * READ_AHEAD batches are read, decoded and encoded while the current one is in its transaction (with
 * one, the database and the event loop took turns waiting on each other: a tenth of the CPUs idle).
 *
 * positions_latest is upserted once per WRITER_LATEST_INTERVAL_MS, not per batch (it would cost a
 * third of the COPY when draining a backlog). Entries of the batches in between stay unacknowledged
 * until it is: after a crash they are delivered again, their rows are duplicates (no-ops) and
 * positions_latest gets them, so it never misses a device's last position.
 */
export class ShardPipeline {
  /** The group exists on every shard of the pipeline: it reads. */
  started = false;
  /** Why the last PostgreSQL operation failed, until one succeeds. */
  writeProblem: string | undefined;
  /** Newest committed row per device not yet in positions_latest (its tuple stays in its batch's buffer). */
  private readonly latest = new Map<string, LatestRow>();
  /** Entries whose rows are committed, waiting for positions_latest before their XACK. */
  private held: StreamEntries[] = [];
  private heldCount = 0;
  private heldBytes = 0;
  private heldTraces: BatchTrace[] = [];
  private lastLatestAt = Date.now();
  /** A read of new entries failed since the pending list was last re-read. */
  private readReplyMayBeLost = false;

  constructor(private readonly options: PipelineOptions) {}

  private get stopping(): boolean {
    return this.options.stop.aborted;
  }

  /** Runs until the writer stops; a batch in hand is finished (commit + ack) or abandoned unacknowledged. */
  async run(): Promise<void> {
    try {
      await this.withRetry('redis', () => this.options.group.ensureGroups());
      this.started = true;
      await this.recoverPending();
      let nextClaimAt = 0;
      // Batches are read, decoded and encoded ahead while earlier ones are in their transactions, one
      // after the other, so PostgreSQL finds the next COPY ready when a commit returns and the event
      // loop always has a batch to prepare while both wait on the database.
      const ahead: Promise<PreparedBatch>[] = [];
      const readAhead = async (after: Promise<PreparedBatch> | undefined): Promise<PreparedBatch> => {
        const previous = await after;
        if (previous !== undefined && this.caughtUp(previous)) {
          await this.pause(previous.readStartedAtMs + (this.options.batchWaitMs ?? 0) - Date.now());
        }
        const readStartedAtMs = Date.now();
        // After a full read, more is likely waiting: read without BLOCK, so that when the backlog ends
        // exactly there, the empty reply (which flushes positions_latest and the held acks) comes at
        // once instead of after WRITER_BLOCK_MS.
        const block = previous === undefined || this.caughtUp(previous);
        const read = this.stopping ? { batches: [], count: this.options.consumer.count } : await this.readNew(block);
        return this.prepare(read.batches, 'new', readStartedAtMs, read.count);
      };
      const fillAhead = () => {
        while (ahead.length < READ_AHEAD && !this.stopping) {
          const batch = readAhead(ahead.at(-1));
          // Rejections surface when the batch is awaited; this only keeps a queued one from being unhandled.
          batch.catch(() => undefined);
          ahead.push(batch);
        }
      };
      fillAhead();
      while (!this.stopping) {
        if (Date.now() >= nextClaimAt) {
          await this.claimRound();
          nextClaimAt = Date.now() + this.options.claimIntervalMs;
        }
        const batch = await (ahead.shift() as Promise<PreparedBatch>);
        fillAhead();
        // An empty read means the stream is idle: nothing to wait for before positions_latest.
        if (batch.size === 0) await this.flushLatest();
        else await this.write(batch);
        if (this.readReplyMayBeLost) {
          // A read that failed may have been served: Redis moved its entries into this consumer's
          // pending list and the reply never arrived. Reading `>` again skips them, so take them
          // back from the pending list now rather than after WRITER_CLAIM_IDLE_MS.
          this.readReplyMayBeLost = false;
          await this.recoverPending();
        }
      }
      for (const batch of ahead) await this.write(await batch);
      await this.flushLatest();
    } catch (err) {
      if (!(err instanceof BatchAbandonedError)) throw err;
      this.options.logger.warn({ err: err.message }, 'batch abandoned unacknowledged at shutdown; it stays pending');
    }
  }

  /** A read came back short of its COUNT on every shard (or empty): the pipeline has caught up with the stream. */
  private caughtUp(batch: PreparedBatch): boolean {
    return batch.batches.every((entries) => entries.length < batch.readCount);
  }

  /** Waits `ms` (if positive), or less when the writer stops. */
  private async pause(ms: number): Promise<void> {
    if (ms > 0 && !this.stopping) await sleep(ms, undefined, { signal: this.options.stop }).catch(() => undefined);
  }

  /** Never rejects: Redis failures are retried; at shutdown it returns nothing. */
  private async readNew(block: boolean): Promise<{ batches: StreamEntries[]; count: number }> {
    try {
      return await this.withRetry('redis', async () => {
        try {
          return await this.options.consumer.readNew(block);
        } catch (err) {
          this.readReplyMayBeLost = true;
          throw err;
        }
      });
    } catch (err) {
      if (err instanceof BatchAbandonedError) return { batches: [], count: this.options.consumer.count };
      throw err;
    }
  }

  /** Re-processes what this consumer had read but not acknowledged before it last stopped. */
  private async recoverPending(): Promise<void> {
    const { consumer, logger } = this.options;
    const cursors = new Map(consumer.options.keys.map((key) => [key, '0']));
    let recovered = 0;
    while (cursors.size > 0 && !this.stopping) {
      // COUNT fits WRITER_BATCH_MAX_BYTES: a full pending list is re-read in bounded slices, never at once.
      const { batches, exhausted } = await this.withRetry('redis', () => consumer.readPending(cursors));
      for (const key of exhausted) cursors.delete(key);
      for (const batch of batches) cursors.set(batch.key, batch.lastId());
      const prepared = await this.prepare(batches, 'pending');
      await this.write(prepared);
      recovered += prepared.size;
    }
    if (recovered > 0) logger.info({ entries: recovered }, 'own pending entries re-processed');
  }

  /** Takes over entries idle beyond the visibility timeout (their consumer died), then removes long-idle consumers. */
  private async claimRound(): Promise<void> {
    const { consumer, logger, metrics, claimIdleMs } = this.options;
    for (const key of consumer.options.keys) {
      let cursor = '0-0';
      do {
        const from = cursor;
        const claimed = await this.withRetry('redis', () => consumer.claim(key, from, claimIdleMs));
        if (claimed.deleted.length > 0) {
          metrics.trimmed.inc(claimed.deleted.length);
          logger.warn({ shard: key, entries: claimed.deleted.length }, 'pending entries were trimmed from the stream before being written');
        }
        if (claimed.entries.length > 0) {
          logger.info({ shard: key, entries: claimed.entries.length }, 'claimed entries idle beyond the visibility timeout');
          await this.write(await this.prepare([claimed.entries], 'claimed'));
        }
        cursor = claimed.next;
      } while (cursor !== '0-0' && !this.stopping);
    }
    if (this.options.consumerExpiryMs > 0) await this.expireConsumers();
  }

  private async expireConsumers(): Promise<void> {
    const { group, logger, metrics, consumerExpiryMs } = this.options;
    try {
      for (const key of group.options.keys) {
        for (const consumer of await group.consumers(key)) {
          if (consumer.name === group.options.consumer || consumer.pending > 0 || consumer.idleMs < consumerExpiryMs) continue;
          await group.deleteConsumer(key, consumer.name);
          metrics.consumersRemoved.inc();
          logger.info({ shard: key, consumer: consumer.name, idleMs: consumer.idleMs }, 'removed idle consumer');
        }
      }
    } catch (err) {
      logger.warn({ err }, 'could not remove idle consumers; next round');
    }
  }

  /**
   * Decodes, validates and encodes a batch. It runs while the previous batch is in its transaction,
   * so it yields to the event loop every few hundred entries: a long synchronous stretch would stall
   * that transaction's COPY data and replies on the socket and serialise what should overlap.
   */
  private async prepare(
    batches: StreamEntries[],
    source: EntrySource,
    readStartedAtMs = 0,
    readCount = this.options.consumer.count,
  ): Promise<PreparedBatch> {
    const size = countEntries(batches);
    const builder = new CopyBatchBuilder(size * 320, size);
    const rowBatches = new Uint16Array(size);
    const rowEntries = new Int32Array(size);
    const letters: DeadLetter[] = [];
    let trimmed = 0;
    let done = 0;
    const now = Date.now();
    const traceparents: string[] = [];
    for (let b = 0; b < batches.length; b++) {
      const entries = batches[b] as StreamEntries;
      for (let i = 0; i < entries.length; i++) {
        if (++done % PREPARE_SLICE === 0) await yieldToEventLoop();
        if (!entries.exists(i)) {
          trimmed++;
          continue;
        }
        if (traceparents.length < MAX_TRACED_POSITIONS) {
          const traceparent = entries.traceparent(i);
          if (traceparent !== undefined) traceparents.push(traceparent);
        }
        try {
          const row = builder.length;
          addStreamEntry(builder, entries, i, now);
          rowBatches[row] = b;
          rowEntries[row] = i;
        } catch (err) {
          const { key } = entries;
          if (err instanceof InvalidPositionError) letters.push({ key, entry: entries.entry(i), reason: err.reason, error: err.message });
          else if (err instanceof StreamEntryError)
            letters.push({ key, entry: entries.entry(i), reason: 'undecodable', error: err.message });
          else throw err;
        }
      }
    }
    const encoded = builder.length > 0 ? builder.finish() : undefined;
    let bytes = encoded?.copyData.length ?? 0;
    for (const reply of new Set(batches.map((b) => b.reply))) bytes += reply.length;
    return {
      source,
      batches,
      size,
      readCount,
      bytes,
      encoded,
      rowBatches,
      rowEntries,
      letters,
      trimmed,
      readStartedAtMs,
      trace: BatchTrace.start(traceparents, readStartedAtMs || now, now, { 'pitwall.source': source, 'pitwall.entries': size }),
    };
  }

  /** Dead letters, then the transaction, then one XACK per shard. */
  private async write(batch: PreparedBatch): Promise<void> {
    const { source, batches, size, encoded, rowBatches, rowEntries, letters, trimmed } = batch;
    if (size === 0) return;
    const { group, store, metrics, logger } = this.options;
    metrics.entriesRead.inc({ source }, size);
    metrics.batchSize.observe({ source }, size);

    // Dead letters are appended before anything is acknowledged: a crash in between re-delivers.
    if (letters.length > 0) await this.withRetry('redis', () => group.deadLetter(letters));
    let latestWritten = false;
    if (encoded !== undefined) {
      // Entries read for the first time take the COPY path; redeliveries and retries expect duplicates.
      const firstPath = source === 'new' ? (this.options.newEntryPath ?? 'copy') : 'staging';
      const latestRows = this.latestDue(batch) ? materialize(mergeLatest(new Map(this.latest), encoded).values()) : undefined;
      const writeBatch = (attempt: number) => store.write(encoded, attempt === 0 ? firstPath : 'staging', latestRows);
      const result = await this.withRetry('postgres', (attempt) =>
        batch.trace === undefined ? writeBatch(attempt) : batch.trace.run(() => writeBatch(attempt)),
      );
      metrics.rows.inc({ result: 'inserted' }, result.inserted);
      if (result.duplicates > 0) metrics.rows.inc({ result: 'duplicate' }, result.duplicates);
      let rejectedRows: Set<number> | undefined;
      if (result.rejected.length > 0) {
        const rejected = result.rejected.map(({ index, error }) => {
          const entries = batches[rowBatches[index] as number] as StreamEntries;
          return { key: entries.key, entry: entries.entry(rowEntries[index] as number), reason: 'rejected_by_database', error };
        });
        await this.withRetry('redis', () => group.deadLetter(rejected));
        letters.push(...rejected);
        rejectedRows = new Set(result.rejected.map((r) => r.index));
      }
      if (result.latestWritten) {
        this.latest.clear();
        latestWritten = true;
      } else {
        mergeLatest(this.latest, encoded, rejectedRows);
      }
    }
    this.held.push(...batches);
    this.heldCount += size;
    this.heldBytes += batch.bytes;
    if (batch.trace !== undefined) this.heldTraces.push(batch.trace);
    if (latestWritten || this.latest.size === 0) await this.ackHeld();

    if (trimmed > 0) {
      metrics.trimmed.inc(trimmed);
      logger.warn({ entries: trimmed, source }, 'pending entries were trimmed from the stream before being written');
    }
    if (letters.length > 0) {
      const byReason = new Map<string, number>();
      for (const letter of letters) byReason.set(letter.reason, (byReason.get(letter.reason) ?? 0) + 1);
      for (const [reason, n] of byReason) metrics.deadLetters.inc({ reason }, n);
      const first = letters[0] as DeadLetter;
      logger.warn(
        { deadLetters: Object.fromEntries(byReason), example: { id: first.entry.id, shard: first.key, error: first.error } },
        'entries moved to the dead-letter stream',
      );
    }
  }

  /**
   * Whether the batch about to be written should carry positions_latest: the interval has passed,
   * too many acknowledgements are held, or its read came back short on every shard (the pipeline has
   * caught up with the stream: deferring only pays while a backlog drains).
   */
  private latestDue(batch: PreparedBatch): boolean {
    const interval = this.options.latestIntervalMs ?? 0;
    return (
      this.stopping ||
      this.caughtUp(batch) ||
      Date.now() - this.lastLatestAt >= interval ||
      this.heldCount + batch.size >= (this.options.maxHeldEntries ?? Number.POSITIVE_INFINITY) ||
      this.heldBytes + batch.bytes >= (this.options.maxHeldBytes ?? Number.POSITIVE_INFINITY)
    );
  }

  /** Upserts positions_latest with what is pending for it, then acknowledges every held entry. */
  private async flushLatest(): Promise<void> {
    if (this.latest.size > 0) {
      const rows = materialize(this.latest.values());
      await this.withRetry('postgres', () => this.options.store.writeLatest(rows));
      this.latest.clear();
    }
    await this.ackHeld();
  }

  private async ackHeld(): Promise<void> {
    if (this.latest.size === 0) this.lastLatestAt = Date.now();
    if (this.held.length === 0) return;
    const batches = this.held;
    const count = this.heldCount;
    const started = Date.now();
    await this.withRetry('redis', () => this.options.consumer.ack(batches));
    const ended = Date.now();
    for (const trace of this.heldTraces) {
      trace.record('writer.xack', started, ended, { 'pitwall.entries': count });
      trace.end();
    }
    this.held = [];
    this.heldCount = 0;
    this.heldBytes = 0;
    this.heldTraces = [];
    this.options.metrics.entriesAcked.inc(count);
  }

  /**
   * Runs an operation until it succeeds, with the one backoff (@pitwall/streams backoffDelay) between
   * attempts. While shutting down a failure abandons the batch instead (BatchAbandonedError).
   */
  private async withRetry<T>(operation: Operation, attempt: (n: number) => Promise<T>): Promise<T> {
    const { logger, metrics, retryInitialMs, retryMaxMs } = this.options;
    for (let n = 0; ; n++) {
      try {
        const value = await attempt(n);
        if (operation === 'postgres' && this.writeProblem !== undefined) {
          logger.info({ attempts: n + 1 }, 'postgres writes succeed again');
          this.writeProblem = undefined;
        }
        return value;
      } catch (err) {
        metrics.retries.inc({ operation });
        const description = operation === 'postgres' ? describePgError(err) : err instanceof Error ? err.message : String(err);
        if (operation === 'postgres') this.writeProblem = description;
        if (n === 0 || n % 20 === 0) logger.warn({ operation, attempt: n + 1, err: description }, 'operation failed; retrying');
        if (this.stopping) throw new BatchAbandonedError(`${operation}: ${description}`, { cause: err });
        if (operation === 'redis' && redisErrorKind(err) === 'nogroup') await this.options.group.ensureGroups().catch(() => undefined);
        const delay = backoffDelay(n, { initialMs: retryInitialMs, maxMs: retryMaxMs });
        await sleep(delay, undefined, { signal: this.options.stop }).catch(() => undefined);
      }
    }
  }
}
