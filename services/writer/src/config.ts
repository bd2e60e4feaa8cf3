import { boolVar, commonEnv, instanceIdEnv, intVar, urlVar, z } from '@pitwall/platform';

/**
 * Environment of the writer: the contract's variables (docs/interfaces.md) first, then this service's own
 * knobs, each with a default that suits one pod writing a few thousand positions per second.
 */
export const writerEnv = {
  ...commonEnv,
  ...instanceIdEnv,
  DATABASE_URL: urlVar(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/pitwall'),

  // Consumption
  /** Entries read per shard per XREADGROUP (COUNT); one batch = one transaction. */
  WRITER_BATCH_SIZE: intVar(5_000, 1, 100_000),
  /**
   * Bytes one read may bring at most (over the pipeline's shards). The COUNT of every read, re-read
   * of pending entries and claim is lowered so that COUNT x shards x the largest stored entry
   * (MAX_POSITION_ENTRY_BYTES) fits; a reply bigger than this anyway (entries stored before the
   * bound) shrinks the COUNT of the next ones. Acknowledgements held for positions_latest are
   * bounded by twice this.
   */
  WRITER_BATCH_MAX_BYTES: intVar(8 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024),
  /**
   * Parallel pipelines, each with its own blocking read and PostgreSQL transaction, each owning every
   * n-th shard (so never the same device); at most STREAM_SHARDS of them run.
   */
  WRITER_PIPELINES: intVar(2, 1, 64),
  /**
   * Once a pipeline has caught up with the stream (a read came back short of WRITER_BATCH_SIZE), its
   * next read starts at least this long after that one, so positions trickling in at 1 Hz per device
   * are written a few transactions per second rather than one per read: PostgreSQL commits, fsyncs
   * and per-statement work shrink with it (2,000 devices at 1 Hz: 80 transactions/s read at once,
   * 8 with 250 ms, and about half the writer's CPU per row). Rows reach PostgreSQL up to this much
   * later; the live path does not wait for them. 0 reads again at once.
   */
  WRITER_BATCH_WAIT_MS: intVar(250, 0, 10_000),
  /** How long one XREADGROUP blocks waiting for new entries (BLOCK); also bounds shutdown latency. */
  WRITER_BLOCK_MS: intVar(1_000, 1, 60_000),
  /** Visibility timeout: entries pending this long on another consumer are taken over (XAUTOCLAIM). */
  WRITER_CLAIM_IDLE_MS: intVar(60_000, 1_000, 86_400_000),
  /** How often this writer looks for entries to take over. */
  WRITER_CLAIM_INTERVAL_MS: intVar(15_000, 100, 3_600_000),
  /** Consumers idle this long with nothing pending are removed from the group; 0 keeps them. */
  WRITER_CONSUMER_EXPIRY_MS: intVar(86_400_000, 0, 365 * 86_400_000),
  /** Approximate length cap of the dead-letter stream (XADD MAXLEN ~). */
  WRITER_DEAD_LETTER_MAXLEN: intVar(10_000, 1, 100_000_000),

  // Trimming (ingestion never trims the shard streams: the writer does)
  /**
   * Entries acknowledged by group processor are kept this long (by entry id time) before the writer
   * trims them, so gateways' warm-up and resumes still find recent positions. Nothing processor has
   * not acknowledged is ever trimmed.
   */
  WRITER_STREAM_RETENTION_MS: intVar(300_000, 0, 7 * 86_400_000),
  /** How often each shard is trimmed (XTRIM MINID below processor's oldest unacknowledged entry). */
  WRITER_TRIM_INTERVAL_MS: intVar(5_000, 100, 3_600_000),
  /**
   * How new entries are written: `copy` COPYs straight into positions and falls back to the staging
   * path when a key exists; `staging` always COPYs into a temporary table and inserts with ON
   * CONFLICT DO NOTHING (slower; kept to compare in `make bench`). Redeliveries always use staging.
   */
  WRITER_WRITE_PATH: z.enum(['copy', 'staging'], { error: 'must be copy or staging' }).default('copy'),
  /**
   * positions_latest (newest row per device) moves forward at most this often, in the transaction of
   * the batch that is due; entries are acknowledged only once it has. 0: in every batch's transaction.
   */
  WRITER_LATEST_INTERVAL_MS: intVar(1_000, 0, 60_000),
  /** Interval of the pending/lag gauges and the PostgreSQL liveness probe. */
  WRITER_STATS_INTERVAL_MS: intVar(2_000, 100, 600_000),

  // Failure handling
  /** First retry delay after a PostgreSQL or Redis failure; doubles per attempt up to the cap. */
  WRITER_RETRY_INITIAL_MS: intVar(100, 1, 60_000),
  WRITER_RETRY_MAX_MS: intVar(5_000, 1, 600_000),
  /** Statement timeout of the writer's PostgreSQL sessions. */
  WRITER_STATEMENT_TIMEOUT_MS: intVar(60_000, 100, 3_600_000),
  /** Hard limit on an ordered shutdown (the pod's terminationGracePeriodSeconds should exceed it). */
  WRITER_SHUTDOWN_TIMEOUT_MS: intVar(20_000, 1_000, 600_000),

  // Schema
  /** Apply the migrations at start-up (`npm run migrate -w services/writer` does it alone). */
  MIGRATE_ON_START: boolVar(true),
  /** Width of one partition of `positions` (UTC). */
  PARTITION_INTERVAL: z.enum(['day', 'week', 'month'], { error: 'must be day, week or month' }).default('day'),
  /** Partitions created ahead of the current one. */
  PARTITIONS_AHEAD: intVar(7, 1, 366),
  /** How often partitions are created ahead and retention is applied. */
  PARTITION_MAINTENANCE_INTERVAL_MS: intVar(3_600_000, 1_000, 86_400_000),
  /** Positions older than this many days are dropped (whole partitions); 0 keeps them forever. */
  RETENTION_DAYS: intVar(0, 0, 36_500),
};

export type WriterConfig = z.infer<z.ZodObject<typeof writerEnv>>;

/** What partition maintenance needs (also read by `npm run migrate`). */
export type PartitionConfig = Pick<WriterConfig, 'PARTITION_INTERVAL' | 'PARTITIONS_AHEAD' | 'RETENTION_DAYS'>;
