// The service itself, imported by main.ts once tracing is set up.
import { createLogger, createMetricsRegistry, HealthServer, loadConfig, runServices, Tracing } from '@pitwall/platform';
import { writerEnv } from './config.js';
import { createWriter } from './create-writer.js';

// Process entry of the writer: stream group `processor` -> PostgreSQL `positions`.
const config = loadConfig('writer', writerEnv);
const logger = createLogger('writer', config.LOG_LEVEL);
const registry = createMetricsRegistry();
const health = new HealthServer(registry, config.METRICS_PORT);
const parts = createWriter(config, { logger, registry, health });
logger.info(
  { instance: config.INSTANCE_ID, streamKey: config.STREAM_KEY, shards: config.STREAM_SHARDS, batchSize: config.WRITER_BATCH_SIZE },
  'writer starting',
);
await runServices({
  logger,
  services: [new Tracing('writer'), health, ...parts.services],
  shutdownTimeoutMs: config.WRITER_SHUTDOWN_TIMEOUT_MS,
  beforeShutdown: () => health.markDraining(),
});
