// The service itself, imported by main.ts once tracing is set up.
import { createLogger, createMetricsRegistry, loadConfig, runServices, Tracing } from '@pitwall/platform';
import { createIngestion } from './app.js';
import { ingestionConfigProblems, ingestionEnv } from './config.js';

// Process entry: configuration from the environment, then every part in order; SIGTERM shuts down
// in order: readiness fails, listeners stop accepting, in-flight packets finish, sockets close, Redis closes.

const config = loadConfig('ingestion', ingestionEnv);
const problems = ingestionConfigProblems(config);
if (problems.length > 0) {
  for (const [variable, message] of problems) process.stderr.write(`ingestion: invalid configuration: ${variable} ${message}\n`);
  process.exit(78);
}
const logger = createLogger('ingestion', config.LOG_LEVEL);
const registry = createMetricsRegistry();
const tracing = new Tracing('ingestion');
const parts = createIngestion(config, { logger, registry, tracer: tracing.tracer });

await runServices({
  logger,
  services: [tracing, ...parts.services],
  shutdownTimeoutMs: config.INGESTION_DRAIN_TIMEOUT_MS + 10_000,
  beforeShutdown: () => parts.health.markDraining(),
});
logger.info(
  {
    tcpPort: parts.tcp.boundPort,
    udpPort: parts.udp.boundPort,
    metricsPort: parts.health.boundPort,
    streamKey: config.STREAM_KEY,
    shards: config.STREAM_SHARDS,
    streamMaxLen: config.STREAM_MAXLEN,
  },
  'ingestion ready',
);
