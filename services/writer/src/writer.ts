import { idempotent, type Service } from '@pitwall/platform';
import type pg from 'pg';
import { ShardPipeline, type PipelineOptions } from './pipeline.js';
import { describePgError } from './store/pg-errors.js';
import type { GroupConsumer } from './stream/group-consumer.js';
import type { ProcessorGroup } from './stream/processor-group.js';
import type { StreamTrimmer } from './stream/stream-trimmer.js';

export interface WriterOptions extends Omit<PipelineOptions, 'group' | 'consumer' | 'stop'> {
  /** Per pipeline: its shards' group, and its consumer on connections of its own. */
  pipelines: { group: ProcessorGroup; consumer: GroupConsumer }[];
  /** The group over every shard, for the gauges. */
  statsGroup: ProcessorGroup;
  /** Pool of the store, probed for the readiness check while nothing is written. */
  pool: pg.Pool;
  statsIntervalMs: number;
  /** Trims every shard below what processor has not acknowledged (none: never trims). */
  trimmer?: StreamTrimmer;
  trimIntervalMs?: number;
  /** Called when a pipeline fails for a reason it cannot handle (a bug); the default crashes the process. */
  onFatal?: (err: unknown) => void;
}

/**
 * The writer: one pipeline per group of shards (WRITER_PIPELINES), each with its own blocking read
 * and its own transaction, so batches of different shards are written in parallel. A device always
 * maps to one shard, so pipelines never write the same device and never wait on each other's locks.
 * Also keeps the pending/lag gauges and probes PostgreSQL for readiness.
 */
export class Writer implements Service {
  readonly name = 'writer';
  private readonly stop = new AbortController();
  private readonly pipelines: ShardPipeline[];
  private runs: Promise<void>[] = [];
  private probeProblem: string | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private statsRun: Promise<void> | undefined;
  private trimTimer: NodeJS.Timeout | undefined;
  private trimRun: Promise<void> | undefined;
  private trimFailing = false;
  private readonly shardLabels: Map<string, string>;

  constructor(private readonly options: WriterOptions) {
    this.shardLabels = new Map(options.statsGroup.options.keys.map((key, shard) => [key, String(shard)]));
    this.pipelines = options.pipelines.map(
      ({ group, consumer }) => new ShardPipeline({ ...options, group, consumer, stop: this.stop.signal }),
    );
  }

  /** Readiness: undefined when ready, else why not. */
  readinessProblem(): string | undefined {
    if (!this.pipelines.every((p) => p.started)) return 'starting';
    const problem = this.pipelines.find((p) => p.writeProblem !== undefined)?.writeProblem ?? this.probeProblem;
    return problem === undefined ? undefined : `postgres: ${problem}`;
  }

  start(): Promise<void> {
    const onFatal =
      this.options.onFatal ??
      ((err: unknown) =>
        setImmediate(() => {
          throw err;
        }));
    this.runs = this.pipelines.map((pipeline) =>
      pipeline.run().catch((err: unknown) => {
        this.options.logger.fatal({ err }, 'writer pipeline failed');
        onFatal(err);
      }),
    );
    this.statsTimer = setInterval(() => {
      this.statsRun ??= this.refreshStats().finally(() => (this.statsRun = undefined));
    }, this.options.statsIntervalMs);
    this.statsTimer.unref();
    const { trimmer, trimIntervalMs } = this.options;
    if (trimmer !== undefined) {
      this.trimTimer = setInterval(() => {
        this.trimRun ??= this.trim(trimmer).finally(() => (this.trimRun = undefined));
      }, trimIntervalMs ?? 5_000);
      this.trimTimer.unref();
    }
    return Promise.resolve();
  }

  /** Stops reading; every pipeline finishes (commit + ack) its batches in hand or abandons them unacknowledged. */
  close = idempotent(async () => {
    this.stop.abort();
    clearInterval(this.statsTimer);
    clearInterval(this.trimTimer);
    await Promise.all(this.runs);
    await this.statsRun;
    await this.trimRun;
  });

  /** One trim of every shard; a failure is counted, logged once until a trim succeeds again, and retried next interval. */
  async trim(trimmer: StreamTrimmer): Promise<void> {
    const { metrics, logger } = this.options;
    for (const key of trimmer.options.keys) {
      if (this.stop.signal.aborted) return;
      try {
        const removed = await trimmer.trim(key);
        if (removed > 0) metrics.streamTrimmed.inc(removed);
        if (this.trimFailing) logger.info('stream trims succeed again');
        this.trimFailing = false;
      } catch (err) {
        metrics.trimFailures.inc();
        if (!this.trimFailing)
          logger.warn({ err: err instanceof Error ? err.message : String(err), shard: key }, 'stream trim failed; retrying');
        this.trimFailing = true;
      }
    }
  }

  /** Pending and lag gauges per shard, and a PostgreSQL probe so readiness reflects an outage while idle. */
  private async refreshStats(): Promise<void> {
    const { statsGroup, metrics, pool, logger } = this.options;
    try {
      await pool.query('SELECT 1');
      if (this.probeProblem !== undefined) logger.info('postgres reachable again');
      this.probeProblem = undefined;
    } catch (err) {
      if (this.probeProblem === undefined) logger.warn({ err: describePgError(err) }, 'postgres unreachable');
      this.probeProblem = describePgError(err);
    }
    try {
      for (const stats of await statsGroup.stats()) {
        const shard = this.shardLabels.get(stats.key) ?? stats.key;
        metrics.pending.set({ shard }, stats.pending);
        metrics.lag.set({ shard }, stats.lag);
      }
    } catch {
      // Redis is down: its readiness check reports it; the gauges keep their last value.
    }
  }
}
