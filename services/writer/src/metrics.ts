import { Counter, Gauge, Histogram, LATENCY_BUCKETS_SECONDS, type Registry } from '@pitwall/platform';

/** Where a batch's entries came from. */
export type EntrySource = 'new' | 'pending' | 'claimed';

const BATCH_SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000];

/** Every metric of the writer, registered on the service's registry. */
export class WriterMetrics {
  readonly batchSize: Histogram<'source'>;
  readonly entriesRead: Counter<'source'>;
  readonly entriesAcked: Counter;
  readonly rows: Counter<'result'>;
  readonly commitSeconds: Histogram<'path'>;
  readonly deadLetters: Counter<'reason'>;
  readonly trimmed: Counter;
  readonly streamTrimmed: Counter;
  readonly trimFailures: Counter;
  readonly retries: Counter<'operation'>;
  readonly pending: Gauge<'shard'>;
  readonly lag: Gauge<'shard'>;
  readonly ready: Gauge;
  readonly consumersRemoved: Counter;
  readonly partitions: Gauge;
  readonly defaultPartitionRows: Gauge;
  readonly partitionMaintenance: Counter<'result'>;

  constructor(registry: Registry, readiness: () => boolean) {
    const registers = [registry];
    this.batchSize = new Histogram({
      name: 'pitwall_writer_batch_size_entries',
      help: 'Stream entries per batch (one transaction, one XACK per shard)',
      labelNames: ['source'],
      buckets: BATCH_SIZE_BUCKETS,
      registers,
    });
    this.entriesRead = new Counter({
      name: 'pitwall_writer_entries_read_total',
      help: 'Stream entries read, by source: new (never delivered), pending (own, after a restart), claimed (from a dead consumer)',
      labelNames: ['source'],
      registers,
    });
    this.entriesAcked = new Counter({
      name: 'pitwall_writer_entries_acked_total',
      help: 'Stream entries acknowledged after their rows were committed (or they were dead-lettered)',
      registers,
    });
    this.rows = new Counter({
      name: 'pitwall_writer_rows_total',
      help: 'Positions written: inserted, or duplicate (already stored, a no-op)',
      labelNames: ['result'],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: 'pitwall_writer_commit_duration_seconds',
      help: 'Duration of one transaction, BEGIN to COMMIT, by path (copy: straight COPY; staging: COPY + INSERT ON CONFLICT; latest: positions_latest alone)',
      labelNames: ['path'],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.deadLetters = new Counter({
      name: 'pitwall_writer_dead_letters_total',
      help: 'Entries moved to the dead-letter stream, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.trimmed = new Counter({
      name: 'pitwall_writer_trimmed_entries_total',
      help: 'Pending entries that had been trimmed from the stream before they were written (lost upstream: raise STREAM_MAXLEN)',
      registers,
    });
    this.streamTrimmed = new Counter({
      name: 'pitwall_writer_stream_trimmed_entries_total',
      help: 'Entries the writer trimmed from the shard streams: acknowledged by group processor and older than WRITER_STREAM_RETENTION_MS',
      registers,
    });
    this.trimFailures = new Counter({
      name: 'pitwall_writer_stream_trim_failures_total',
      help: 'Trims of a shard stream that failed (Redis unreachable); retried next WRITER_TRIM_INTERVAL_MS',
      registers,
    });
    this.retries = new Counter({
      name: 'pitwall_writer_retries_total',
      help: 'Failed attempts retried with backoff, by operation (postgres, redis)',
      labelNames: ['operation'],
      registers,
    });
    this.pending = new Gauge({
      name: 'pitwall_writer_pending_entries',
      help: 'Entries delivered in group processor and not acknowledged yet, per shard',
      labelNames: ['shard'],
      registers,
    });
    this.lag = new Gauge({
      name: 'pitwall_writer_group_lag_entries',
      help: 'Entries of the shard not yet delivered to group processor',
      labelNames: ['shard'],
      registers,
    });
    this.ready = new Gauge({
      name: 'pitwall_writer_ready',
      help: '1 when /readyz passes (Redis and PostgreSQL reachable, schema applied), else 0',
      registers,
      collect() {
        this.set(readiness() ? 1 : 0);
      },
    });
    this.consumersRemoved = new Counter({
      name: 'pitwall_writer_consumers_removed_total',
      help: 'Idle consumers with nothing pending removed from group processor',
      registers,
    });
    this.partitions = new Gauge({
      name: 'pitwall_writer_partitions',
      help: 'Range partitions of positions (without the default partition), as of the last maintenance',
      registers,
    });
    this.defaultPartitionRows = new Gauge({
      name: 'pitwall_writer_default_partition_rows',
      help: 'Rows in the default partition of positions (no partition for their time yet), as of the last maintenance',
      registers,
    });
    this.partitionMaintenance = new Counter({
      name: 'pitwall_writer_partition_maintenance_total',
      help: 'Partition maintenance rounds, by result (ok, skipped: another writer held the lock, failed)',
      labelNames: ['result'],
      registers,
    });
  }
}
