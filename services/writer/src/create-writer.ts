import { deadLetterKey, shardKeys } from '@pitwall/contract';
import { closeStreamClient, createStreamClient, ShardConnections, streamClientReadiness } from '@pitwall/streams';
import { type HealthServer, type Logger, type Registry, type Service } from '@pitwall/platform';
import type pg from 'pg';
import type { WriterConfig } from './config.js';
import { WriterMetrics } from './metrics.js';
import { createPool, poolService } from './postgres.js';
import { PartitionMaintainer } from './schema/partitions.js';
import { SchemaService } from './schema/schema-service.js';
import { PositionStore } from './store/position-store.js';
import { GroupConsumer } from './stream/group-consumer.js';
import { ProcessorGroup } from './stream/processor-group.js';
import { StreamTrimmer } from './stream/stream-trimmer.js';
import { Writer } from './writer.js';

/** A reply may take this long beyond what its command blocks before the connection is taken for dead. */
const REDIS_REPLY_TIMEOUT_MS = 10_000;

export interface WriterParts {
  /** In start order: PostgreSQL pool, Redis clients, schema, writer loop (closed in reverse). */
  services: Service[];
  writer: Writer;
  metrics: WriterMetrics;
  pool: pg.Pool;
}

/** Builds the writer from its configuration and registers its readiness checks on `health`. */
export function createWriter(config: WriterConfig, deps: { logger: Logger; registry: Registry; health: HealthServer }): WriterParts {
  const { logger, registry, health } = deps;
  const metrics = new WriterMetrics(registry, () => health.notReadyReasons().length === 0);
  const pool = createPool({
    databaseUrl: config.DATABASE_URL,
    applicationName: `pitwall-writer:${config.INSTANCE_ID}`.slice(0, 63),
    statementTimeoutMs: config.WRITER_STATEMENT_TIMEOUT_MS,
    // A transaction per pipeline, the readiness probe, partition maintenance.
    max: Math.min(config.WRITER_PIPELINES, config.STREAM_SHARDS) + 2,
    logger,
  });
  // Commands fail fast while Redis is down; the loop retries them with its own backoff.
  const redisOptions = { logger, maxRetriesPerRequest: 1 };
  const commands = createStreamClient(config, { ...redisOptions, name: `writer:${config.INSTANCE_ID}` });
  const keys = shardKeys(config.STREAM_KEY, config.STREAM_SHARDS);
  const pipelineCount = Math.min(config.WRITER_PIPELINES, keys.length);
  const groupOptions = {
    consumer: config.INSTANCE_ID,
    deadLetterKey: deadLetterKey(config.STREAM_KEY),
    deadLetterMaxLen: config.WRITER_DEAD_LETTER_MAXLEN,
  };
  // Every shard is read on a connection of its own (nothing queues behind its BLOCK) and acknowledged
  // and claimed on another, to the node that serves it (cluster mode); both hand back raw replies.
  // The shared ioredis client serves the rest and, in cluster mode, knows the slot map.
  const connections = new ShardConnections({
    target: config,
    topology: commands,
    name: `writer:${config.INSTANCE_ID}`,
    logger,
    replyTimeoutMs: REDIS_REPLY_TIMEOUT_MS,
  });
  const pipelines = Array.from({ length: pipelineCount }, (_, i) => {
    const pipelineKeys = keys.filter((_, shard) => shard % pipelineCount === i);
    return {
      group: new ProcessorGroup(commands, { ...groupOptions, keys: pipelineKeys }),
      consumer: new GroupConsumer(connections, {
        keys: pipelineKeys,
        consumer: config.INSTANCE_ID,
        count: config.WRITER_BATCH_SIZE,
        maxBytes: config.WRITER_BATCH_MAX_BYTES,
        blockMs: config.WRITER_BLOCK_MS,
      }),
    };
  });
  // Trimming goes on each shard's acknowledgement connection (short EVALs).
  const trimmer = new StreamTrimmer((key) => connections.connection(key, 'ack'), { keys, retentionMs: config.WRITER_STREAM_RETENTION_MS });
  const statsGroup = new ProcessorGroup(commands, { ...groupOptions, keys });
  const store = new PositionStore(pool, { onCommit: (kind, seconds) => metrics.commitSeconds.observe({ path: kind }, seconds) });
  const schema = new SchemaService({
    databaseUrl: config.DATABASE_URL,
    migrate: config.MIGRATE_ON_START,
    maintainer: new PartitionMaintainer(pool, config, logger.child({ part: 'partitions' })),
    maintenanceIntervalMs: config.PARTITION_MAINTENANCE_INTERVAL_MS,
    metrics,
    logger,
    retryInitialMs: config.WRITER_RETRY_INITIAL_MS,
    retryMaxMs: config.WRITER_RETRY_MAX_MS,
  });
  const writer = new Writer({
    pipelines,
    statsGroup,
    store,
    pool,
    metrics,
    logger,
    claimIdleMs: config.WRITER_CLAIM_IDLE_MS,
    claimIntervalMs: config.WRITER_CLAIM_INTERVAL_MS,
    consumerExpiryMs: config.WRITER_CONSUMER_EXPIRY_MS,
    retryInitialMs: config.WRITER_RETRY_INITIAL_MS,
    retryMaxMs: Math.max(config.WRITER_RETRY_MAX_MS, config.WRITER_RETRY_INITIAL_MS),
    statsIntervalMs: config.WRITER_STATS_INTERVAL_MS,
    trimmer,
    trimIntervalMs: config.WRITER_TRIM_INTERVAL_MS,
    newEntryPath: config.WRITER_WRITE_PATH,
    latestIntervalMs: config.WRITER_LATEST_INTERVAL_MS,
    batchWaitMs: config.WRITER_BATCH_WAIT_MS,
    // Bounds what a crash re-delivers; far above what one interval holds at full speed.
    maxHeldEntries: Math.max(100_000, 10 * config.WRITER_BATCH_SIZE * config.STREAM_SHARDS),
    maxHeldBytes: 2 * config.WRITER_BATCH_MAX_BYTES,
  });

  health.addReadinessCheck('redis', streamClientReadiness(commands));
  // The read connections are used at least every WRITER_BLOCK_MS, so their state is always fresh.
  health.addReadinessCheck('redis-readers', () => connections.readinessProblem());
  health.addReadinessCheck('schema', () => schema.readinessProblem());
  health.addReadinessCheck('writer', () => writer.readinessProblem());

  const redis: Service = {
    name: 'redis',
    start: () => Promise.resolve(),
    close: async () => {
      await connections.close();
      await closeStreamClient(commands);
    },
  };
  return { services: [poolService(pool), redis, schema, writer], writer, metrics, pool };
}
