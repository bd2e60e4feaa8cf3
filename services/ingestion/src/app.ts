import type { Tracer } from '@opentelemetry/api';
import { HealthServer, type Logger, type Registry, type Service } from '@pitwall/platform';
import { streamClientReadiness } from '@pitwall/streams';
import { BackpressureMonitor } from './backpressure/backpressure-monitor.js';
import type { IngestionConfig } from './config.js';
import { deadLetterKey } from '@pitwall/contract';
import { LogLimiter } from './log-limiter.js';
import { IngestionMetrics } from './metrics.js';
import { PacketSink } from './packet-sink.js';
import { RedisConnection } from './redis-connection.js';
import { PositionStore } from './store/position-store.js';
import { TcpIngestionServer } from './tcp/tcp-server.js';
import { UdpIngestionServer } from './udp/udp-server.js';

export interface IngestionParts {
  health: HealthServer;
  redis: RedisConnection;
  backpressure: BackpressureMonitor;
  tcp: TcpIngestionServer;
  udp: UdpIngestionServer;
  metrics: IngestionMetrics;
  /** In start order; runServices closes them in reverse (listeners first, Redis and health last). */
  services: Service[];
}

/** Builds every part of the ingestion service from its configuration (main.ts and in-process tests). */
export function createIngestion(config: IngestionConfig, deps: { logger: Logger; registry: Registry; tracer: Tracer }): IngestionParts {
  const { logger, registry, tracer } = deps;
  const metrics = new IngestionMetrics(registry);
  const health = new HealthServer(registry, config.METRICS_PORT);
  const redis = new RedisConnection(config, logger);
  const store = new PositionStore(
    redis.client,
    {
      streamMaxLen: config.STREAM_MAXLEN,
      liveMaxLen: config.INGESTION_LIVE_STREAM_MAXLEN,
      deadLetterKey: deadLetterKey(config.STREAM_KEY),
      deadLetterMaxLen: config.INGESTION_DEAD_LETTER_MAXLEN,
      minReplicas: config.INGESTION_MIN_REPLICAS,
      replicaTimeoutMs: config.INGESTION_REPLICA_TIMEOUT_MS,
    },
    metrics.xaddSeconds,
  );
  redis.onReady(() => store.loadScript());
  const sink = new PacketSink(
    store,
    { streamKey: config.STREAM_KEY, shards: config.STREAM_SHARDS, maxFutureMs: config.INGESTION_MAX_FUTURE_MS },
    metrics,
    tracer,
  );
  // Every per-device and per-packet log line of TCP and UDP: at most 20 per 10 s, the rest counted.
  const logs = new LogLimiter(logger, 20, 10_000, (n) => metrics.logLinesSuppressed.inc(n));
  const backpressure = new BackpressureMonitor(
    redis.client,
    {
      streamKey: config.STREAM_KEY,
      shards: config.STREAM_SHARDS,
      streamMaxLen: config.STREAM_MAXLEN,
      highFraction: config.INGESTION_BACKPRESSURE_HIGH,
      lowFraction: config.INGESTION_BACKPRESSURE_LOW,
      pollMs: config.INGESTION_BACKPRESSURE_POLL_MS,
    },
    metrics,
    logger,
  );
  const allowlist = config.INGESTION_IMEI_ALLOWLIST.length > 0 ? new Set(config.INGESTION_IMEI_ALLOWLIST) : undefined;
  const tcp = new TcpIngestionServer(
    {
      host: config.INGESTION_HOST,
      port: config.INGESTION_TCP_PORT,
      maxConnections: config.INGESTION_MAX_CONNECTIONS,
      maxConnectionsPerAddress: config.INGESTION_MAX_CONNECTIONS_PER_ADDRESS,
      idleTimeoutMs: config.INGESTION_IDLE_TIMEOUT_MS,
      handshakeTimeoutMs: config.INGESTION_HANDSHAKE_TIMEOUT_MS,
      frameTimeoutMs: config.INGESTION_FRAME_TIMEOUT_MS,
      redisTimeoutMs: config.INGESTION_REDIS_TIMEOUT_MS,
      drainTimeoutMs: config.INGESTION_DRAIN_TIMEOUT_MS,
      maxFrameBytes: config.INGESTION_MAX_FRAME_BYTES,
      maxBadFrames: config.INGESTION_MAX_BAD_FRAMES,
      allowlist,
    },
    sink,
    backpressure,
    metrics,
    logger,
    logs,
  );
  const udp = new UdpIngestionServer(
    {
      host: config.INGESTION_HOST,
      port: config.INGESTION_UDP_PORT,
      maxInflight: config.INGESTION_UDP_MAX_INFLIGHT,
      allowlist,
      drainTimeoutMs: config.INGESTION_DRAIN_TIMEOUT_MS,
      redisTimeoutMs: config.INGESTION_REDIS_TIMEOUT_MS,
    },
    sink,
    backpressure,
    metrics,
    logger,
    logs,
  );
  health.addReadinessCheck('redis', streamClientReadiness(redis.client));
  health.addReadinessCheck('tcp', () => (tcp.listening ? undefined : 'not listening'));
  return { health, redis, backpressure, tcp, udp, metrics, services: [health, redis, backpressure, udp, tcp] };
}
