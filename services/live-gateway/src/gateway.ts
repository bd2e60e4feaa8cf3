import type { Tracer } from '@opentelemetry/api';
import {
  closeRedisClient,
  createMetricsRegistry,
  createRedisClient,
  HealthServer,
  idempotent,
  redisReadiness,
  Tracing,
  type Logger,
  type Registry,
  type Service,
} from '@pitwall/platform';
import uWS from 'uWebSockets.js';
import { DirectusTokenVerifier } from './auth/directus-token-verifier.js';
import { LocalTokenVerifier } from './auth/local-token-verifier.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import { EventAuthorizer } from './authz/event-authorizer.js';
import type { LiveGatewayConfig } from './config.js';
import { DirectusClient } from './directus/directus-client.js';
import { EventDirectory } from './events/event-directory.js';
import { LatestPositions } from './fanout/latest-positions.js';
import { LiveHub } from './fanout/live-hub.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { GatewayServer } from './server/gateway-server.js';
import { BroadcastConsumer } from './stream/broadcast-consumer.js';
import { GroupCollector } from './stream/group-collector.js';
import { ConcurrencyLimiter } from './util/limiter.js';

export interface LiveGateway {
  /** In start order; runServices closes them in reverse. */
  services: Service[];
  registry: Registry;
  metrics: GatewayMetrics;
  health: HealthServer;
  server: GatewayServer;
  consumer: BroadcastConsumer;
  collector: GroupCollector;
  hub: LiveHub;
  authorizer: EventAuthorizer;
  directory: EventDirectory;
  /** First step of a shutdown: readiness fails and no new connection is accepted. */
  beginDrain(): void;
}

export interface LiveGatewayOptions {
  logger: Logger;
  /** Listen address of the WebSocket port (default all interfaces). */
  host?: string;
  /** Tracing service; by default one configured by OTEL_* variables. */
  tracing?: Tracing;
  tracer?: Tracer;
}

/** Builds every part of the live gateway from its configuration. Nothing runs until started. */
export function createLiveGateway(config: LiveGatewayConfig, options: LiveGatewayOptions): LiveGateway {
  const { logger } = options;
  const registry = createMetricsRegistry();
  const metrics = createGatewayMetrics(registry);
  const tracing = options.tracing ?? new Tracing('live-gateway');
  const tracer = options.tracer ?? tracing.tracer;
  const health = new HealthServer(registry, config.METRICS_PORT);

  const directus = new DirectusClient(config.DIRECTUS_URL, config.GATEWAY_DIRECTUS_TIMEOUT_MS);
  const verifier: TokenVerifier =
    config.DIRECTUS_SECRET !== undefined ? new LocalTokenVerifier(config.DIRECTUS_SECRET) : new DirectusTokenVerifier(directus, metrics);
  const limiter = new ConcurrencyLimiter(config.GATEWAY_DIRECTUS_CONCURRENCY);
  const authorizer = new EventAuthorizer(directus, limiter, metrics, config.GATEWAY_PERMISSION_CACHE_TTL_MS);
  const directory = new EventDirectory(directus, config.DIRECTUS_SERVICE_TOKEN, metrics, config.GATEWAY_ENTRIES_REFRESH_INTERVAL_MS);
  const latest = new LatestPositions(config.GATEWAY_LATEST_CACHE_DEVICES);

  const app = uWS.App();
  const hub = new LiveHub(app, directory, latest, metrics, {
    batchWindowMs: config.GATEWAY_BATCH_WINDOW_MS,
    conflateBufferBytes: config.GATEWAY_CONFLATE_BUFFER_BYTES,
    slowClientTimeoutMs: config.GATEWAY_SLOW_CLIENT_TIMEOUT_MS,
    revalidateIntervalMs: config.GATEWAY_REVALIDATE_INTERVAL_MS,
  });
  const server = new GatewayServer(
    {
      port: config.GATEWAY_PORT,
      host: options.host ?? '0.0.0.0',
      maxMessageBytes: config.GATEWAY_MAX_MESSAGE_BYTES,
      maxSubscriptionsPerConnection: config.GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION,
      subscribeRatePerSecond: config.GATEWAY_SUBSCRIBE_RATE_PER_SECOND,
      maxConnections: config.GATEWAY_MAX_CONNECTIONS,
      maxProtocolErrors: config.GATEWAY_MAX_PROTOCOL_ERRORS,
      idleTimeoutSeconds: config.GATEWAY_IDLE_TIMEOUT_SECONDS,
      authTimeoutMs: config.GATEWAY_AUTH_TIMEOUT_MS,
      tokenExpiryGraceMs: config.GATEWAY_TOKEN_EXPIRY_GRACE_MS,
      maxBackpressureBytes: config.GATEWAY_MAX_BACKPRESSURE_BYTES,
      revalidateIntervalMs: config.GATEWAY_REVALIDATE_INTERVAL_MS,
      entriesRefreshIntervalMs: config.GATEWAY_ENTRIES_REFRESH_INTERVAL_MS,
      slowClientCheckMs: config.GATEWAY_SLOW_CLIENT_CHECK_MS,
    },
    { app, verifier, authorizer, directory, hub, metrics, logger, tracer },
  );

  const commands = createRedisClient(config.REDIS_URL, { name: `live-gateway:${config.INSTANCE_ID}:commands`, logger });
  // The blocking reader must never give up a command while Redis is away: the loop retries.
  const reader = createRedisClient(config.REDIS_URL, {
    name: `live-gateway:${config.INSTANCE_ID}:reader`,
    logger,
    maxRetriesPerRequest: null,
  });
  const consumer = new BroadcastConsumer(
    {
      streamKey: config.STREAM_KEY,
      shards: config.STREAM_SHARDS,
      instanceId: config.INSTANCE_ID,
      blockMs: config.GATEWAY_READ_BLOCK_MS,
      count: config.GATEWAY_READ_COUNT,
      warmTailEntries: config.GATEWAY_WARM_TAIL_ENTRIES,
      touchIntervalMs: Math.max(1_000, Math.floor(config.GATEWAY_GROUP_IDLE_MS / 10)),
    },
    {
      commands,
      reader,
      metrics,
      logger,
      onWarm: (positions) => {
        for (const position of positions) latest.update(position);
        metrics.latestCacheDevices.set(latest.size);
      },
      onPositions: (positions) => hub.onPositions(positions),
    },
  );
  const collector = new GroupCollector(
    commands,
    {
      streamKey: config.STREAM_KEY,
      shards: config.STREAM_SHARDS,
      ownGroup: consumer.group,
      idleMs: config.GATEWAY_GROUP_IDLE_MS,
      intervalMs: config.GATEWAY_GROUP_GC_INTERVAL_MS,
    },
    metrics,
    logger,
  );
  // Closed after the consumer (which destroys the group with `commands`).
  const redisClients: Service = {
    name: 'redis',
    start: () => Promise.resolve(),
    close: idempotent(async () => {
      await Promise.all([closeRedisClient(reader), closeRedisClient(commands)]);
    }),
  };

  health.addReadinessCheck('redis', redisReadiness(commands));
  health.addReadinessCheck('stream', () => (consumer.running ? undefined : 'fan-out group not read yet'));
  health.addReadinessCheck('websocket', () => (server.listening ? undefined : 'not listening'));

  const beginDrain = () => {
    health.markDraining();
    server.stopAccepting();
  };

  return {
    services: [tracing, health, redisClients, consumer, collector, server],
    registry,
    metrics,
    health,
    server,
    consumer,
    collector,
    hub,
    authorizer,
    directory,
    beginDrain,
  };
}
