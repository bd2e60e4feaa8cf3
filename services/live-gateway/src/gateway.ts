import type { Tracer } from '@opentelemetry/api';
import { createMetricsRegistry, HealthServer, idempotent, Tracing, type Logger, type Registry, type Service } from '@pitwall/platform';
import { closeStreamClient, createStreamClient, ShardConnections, streamClientReadiness } from '@pitwall/streams';
import uWS from 'uWebSockets.js';
import { DirectusTokenVerifier } from './auth/directus-token-verifier.js';
import { LocalTokenVerifier } from './auth/local-token-verifier.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import { Authorizer } from './authz/authorization.js';
import { ClaimAuthorizer } from './authz/claim-authorizer.js';
import { DirectusAuthorizer } from './authz/directus-authorizer.js';
import type { LiveGatewayConfig } from './config.js';
import { DirectusClient } from './directus/directus-client.js';
import { EventDirectory } from './events/event-directory.js';
import { LatestPositions } from './fanout/latest-positions.js';
import { LiveHub } from './fanout/live-hub.js';
import { PositionHistory } from './history/position-history.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { GatewayServer } from './server/gateway-server.js';
import { assertNativeUws } from './server/native-uws.js';
import { BroadcastConsumer } from './stream/broadcast-consumer.js';
import { GroupCollector } from './stream/group-collector.js';
import { ConcurrencyLimiter } from './util/limiter.js';

/** How long a stream read may take beyond its BLOCK before its connection is taken for dead. */
const REDIS_REPLY_TIMEOUT_MS = 10_000;

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
  /** The Directus source of the authorizer (its cache can be cleared). */
  directusAuthorizer: DirectusAuthorizer;
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

/**
 * Builds every part of the live gateway from its configuration. Nothing runs until started. Throws
 * UwsNotNativeError when uWebSockets.js fell back to its JavaScript implementation.
 */
export function createLiveGateway(config: LiveGatewayConfig, options: LiveGatewayOptions): LiveGateway {
  assertNativeUws();
  const { logger } = options;
  const registry = createMetricsRegistry();
  const metrics = createGatewayMetrics(registry);
  const tracing = options.tracing ?? new Tracing('live-gateway');
  const tracer = options.tracer ?? tracing.tracer;
  const health = new HealthServer(registry, config.METRICS_PORT);

  // One limiter for every Directus call: token verification, authorization and entries.
  const limiter = new ConcurrencyLimiter(config.GATEWAY_DIRECTUS_CONCURRENCY, 100_000, config.GATEWAY_DIRECTUS_MAX_WAIT_MS);
  const directus = new DirectusClient(config.DIRECTUS_URL, config.GATEWAY_DIRECTUS_TIMEOUT_MS, limiter, metrics, logger);
  const verifier: TokenVerifier =
    config.DIRECTUS_SECRET !== undefined
      ? new LocalTokenVerifier(config.DIRECTUS_SECRET)
      : new DirectusTokenVerifier(directus, metrics, { refusedTtlMs: config.GATEWAY_REFUSED_TOKEN_CACHE_MS });
  const directusAuthorizer = new DirectusAuthorizer(directus, metrics, config.GATEWAY_PERMISSION_CACHE_TTL_MS);
  // Sources in order; the first with an opinion decides: the verified token's pitwall_events claim
  // (no call), then Directus (GET /items/events/:id with the user's token).
  const authorizer = new Authorizer([new ClaimAuthorizer(metrics), directusAuthorizer]);
  const directory = new EventDirectory(
    directus,
    config.DIRECTUS_SERVICE_TOKEN,
    metrics,
    config.GATEWAY_ENTRIES_REFRESH_INTERVAL_MS,
    config.GATEWAY_EVENT_WINDOW_MARGIN_MS,
  );
  const latest = new LatestPositions(config.GATEWAY_LATEST_CACHE_DEVICES, { maxFutureMs: config.GATEWAY_MAX_FUTURE_MS });

  const history = new PositionHistory({
    shards: config.STREAM_SHARDS,
    // The shard streams, then their live-only streams (BroadcastConsumer: source shards + n).
    sources: 2 * config.STREAM_SHARDS,
    windowMs: config.GATEWAY_HISTORY_SECONDS * 1000,
    maxBytes: config.GATEWAY_HISTORY_MAX_BYTES,
  });

  const app = uWS.App();
  const hub = new LiveHub(app, directory, latest, metrics, {
    history,
    resumeWaitMs: config.GATEWAY_RESUME_WAIT_MS,
    batchWindowMs: config.GATEWAY_BATCH_WINDOW_MS,
    conflateBufferBytes: config.GATEWAY_CONFLATE_BUFFER_BYTES,
    slowClientTimeoutMs: config.GATEWAY_SLOW_CLIENT_TIMEOUT_MS,
  });
  const server = new GatewayServer(
    {
      port: config.GATEWAY_PORT,
      host: options.host ?? '0.0.0.0',
      maxConnections: config.GATEWAY_MAX_CONNECTIONS,
      maxUnauthenticated: config.GATEWAY_MAX_UNAUTHENTICATED_CONNECTIONS,
      maxPerAddress: config.GATEWAY_MAX_CONNECTIONS_PER_ADDRESS,
      allowedOrigins: config.GATEWAY_ALLOWED_ORIGINS,
      clientAddressHeader: config.GATEWAY_CLIENT_ADDRESS_HEADER,
      idleTimeoutSeconds: config.GATEWAY_IDLE_TIMEOUT_SECONDS,
      maxBackpressureBytes: config.GATEWAY_MAX_BACKPRESSURE_BYTES,
      revalidateIntervalMs: config.GATEWAY_REVALIDATE_INTERVAL_MS,
      entriesRefreshIntervalMs: config.GATEWAY_ENTRIES_REFRESH_INTERVAL_MS,
      slowClientCheckMs: config.GATEWAY_SLOW_CLIENT_CHECK_MS,
      drainReconnectsPerSecond: config.GATEWAY_DRAIN_RECONNECTS_PER_SECOND,
    },
    {
      app,
      session: {
        limits: {
          maxSubscriptions: config.GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION,
          subscribeRatePerSecond: config.GATEWAY_SUBSCRIBE_RATE_PER_SECOND,
          authRatePerMinute: config.GATEWAY_AUTH_RATE_PER_MINUTE,
          maxProtocolErrors: config.GATEWAY_MAX_PROTOCOL_ERRORS,
          authTimeoutMs: config.GATEWAY_AUTH_TIMEOUT_MS,
          tokenExpiryGraceMs: config.GATEWAY_TOKEN_EXPIRY_GRACE_MS,
          maxUnreadBytes: config.GATEWAY_MAX_UNREAD_BYTES,
          revalidateIntervalMs: config.GATEWAY_REVALIDATE_INTERVAL_MS,
        },
        verifier,
        authorizer,
        directory,
        hub,
        metrics,
        logger,
        tracer,
      },
      directory,
      hub,
      metrics,
      logger,
    },
  );

  const commands = createStreamClient(config, { name: `live-gateway:${config.INSTANCE_ID}:commands`, logger });
  // The blocking reads, one connection per shard and per live-only stream (a quiet shard's BLOCK never
  // holds up a busy one), each to the node serving its shard as the commands client's slot map says
  // (cluster mode). Their replies are read in place: every pod reads every entry, and a general
  // client's Buffer per id, field and value cost more than the rest of what it does with a position.
  const connections = new ShardConnections({
    target: config,
    topology: commands,
    name: `live-gateway:${config.INSTANCE_ID}`,
    logger,
    replyTimeoutMs: REDIS_REPLY_TIMEOUT_MS,
  });
  const consumer = new BroadcastConsumer(
    {
      streamKey: config.STREAM_KEY,
      shards: config.STREAM_SHARDS,
      instanceId: config.INSTANCE_ID,
      blockMs: config.GATEWAY_READ_BLOCK_MS,
      count: config.GATEWAY_READ_COUNT,
      warmTailEntries: config.GATEWAY_WARM_TAIL_ENTRIES,
      warmMaxBytes: config.GATEWAY_WARM_MAX_BYTES,
      warmTimeoutMs: config.GATEWAY_WARM_TIMEOUT_MS,
      touchIntervalMs: Math.max(1_000, Math.floor(config.GATEWAY_GROUP_IDLE_MS / 10)),
    },
    {
      commands,
      connections,
      metrics,
      logger,
      onWarm: (positions) => {
        for (const position of positions) latest.update(position);
        metrics.latestCacheDevices.set(latest.size);
      },
      onPositions: (positions) => hub.onPositions(positions),
      onStart: (source, startId, tail) => {
        if (startId === undefined) history.gap(source);
        else history.start(source, startId);
        history.warm(source, [...tail].reverse());
      },
      onGap: (source) => history.gap(source),
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
  // Closed after the consumer (which destroys the group with `commands` and closes `connections`).
  const redisClients: Service = {
    name: 'redis',
    start: () => Promise.resolve(),
    close: idempotent(async () => {
      await connections.close();
      await closeStreamClient(commands);
    }),
  };

  health.addReadinessCheck('redis', streamClientReadiness(commands));
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
    directusAuthorizer,
    directory,
    beginDrain,
  };
}
