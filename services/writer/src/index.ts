export { writerEnv, type WriterConfig, type PartitionConfig } from './config.js';
export { createWriter, type WriterParts } from './create-writer.js';
export { Writer, type WriterOptions } from './writer.js';
export { ShardPipeline, type PipelineOptions } from './pipeline.js';
export { WriterMetrics, type EntrySource } from './metrics.js';
export { createPool } from './postgres.js';
export { ProcessorGroup, type DeadLetter } from './stream/processor-group.js';
export { GroupConsumer, countEntries } from './stream/group-consumer.js';
export { RespConnection } from './stream/resp-connection.js';
export { StreamEntries, parseStreamRead, parseAutoClaim, encodeAck } from './stream/stream-entries.js';
export { ReplyScanner, RespCursor, encodeCommand } from './stream/resp.js';
export { RedisReplyError } from './stream/redis-reply-error.js';
export { RedisConnectionError } from './stream/redis-connection-error.js';
export { PositionStore, mergeNewest, type WritePath, type WriteResult, type TransactionKind } from './store/position-store.js';
export { toPositionRow, positionAttributes, type PositionRow, MIN_TIMESTAMP_MS, MAX_CLOCK_AHEAD_MS } from './store/position-row.js';
export { encodeBinaryCopy, POSITION_COLUMNS } from './store/binary-copy.js';
export { InvalidPositionError, type DeadLetterReason } from './store/invalid-position-error.js';
export { BatchAbandonedError } from './batch-abandoned-error.js';
export { runMigrations, MIGRATIONS_DIR, MIGRATIONS_TABLE } from './schema/migrations.js';
export { PartitionMaintainer, type MaintenanceResult } from './schema/partitions.js';
export * from './schema/partition-ranges.js';
export { addEntry, addStreamEntry } from './store/entry-row.js';
export { checkPositionRow, valueProblem } from './store/position-row.js';
export {
  batchRow,
  batchRows,
  CopyBatchBuilder,
  encodeBatch,
  rowFromTuple,
  subBatch,
  type BatchRow,
  type EncodedBatch,
} from './store/copy-batch.js';
