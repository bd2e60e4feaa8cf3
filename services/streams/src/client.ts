import type { ConnectionOptions } from 'node:tls';
import type { Logger, RedisClusterNode } from '@pitwall/platform';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { backoffDelay } from './backoff.js';
import { redisErrorKind } from './errors.js';
import type { StreamClient } from './groups.js';

/** Where Redis is: the service's REDIS_* variables (platform commonEnv). */
export interface RedisTarget {
  REDIS_URL: string;
  /** Non-empty: Redis Cluster mode (REDIS_URL is not used). */
  REDIS_CLUSTER_NODES: { nodes: readonly RedisClusterNode[]; tls: boolean };
  REDIS_USERNAME?: string | undefined;
  REDIS_PASSWORD?: string | undefined;
}

export function isClusterTarget(target: RedisTarget): boolean {
  return target.REDIS_CLUSTER_NODES.nodes.length > 0;
}

/** Options that apply to a standalone client and to every node connection of a cluster client. */
export type StreamClientOptions = Pick<
  RedisOptions,
  'lazyConnect' | 'enableOfflineQueue' | 'autoResendUnfulfilledCommands' | 'maxRetriesPerRequest' | 'connectTimeout' | 'commandTimeout'
> & {
  /** Shown in CLIENT LIST and in logs, e.g. `writer:consumer`. */
  name: string;
  logger: Logger;
};

/** How a cluster client waits out a failover, CLUSTERDOWN, TRYAGAIN (ms) before it retries a command. */
const CLUSTER_RETRY_DELAY_MS = 200;

/**
 * A Redis client with the telemetry plane's defaults, standalone (REDIS_URL) or Redis Cluster
 * (REDIS_CLUSTER_NODES, REDIS_USERNAME, REDIS_PASSWORD, TLS with rediss:// seeds). It reconnects
 * forever with the one backoff (Redis coming back must heal every service by itself) and logs errors
 * once per outage instead of once per retry. The cluster client (ioredis `Cluster`) keeps the slot
 * map: it follows MOVED and ASK, and after a failover it finds the new master by itself.
 */
export function createStreamClient(target: RedisTarget, options: StreamClientOptions): StreamClient {
  const { name, logger, ...rest } = options;
  const retryStrategy = (attempt: number) => backoffDelay(attempt);
  let client: StreamClient;
  if (isClusterTarget(target)) {
    const { nodes, tls } = target.REDIS_CLUSTER_NODES;
    const { enableOfflineQueue, lazyConnect, ...perNode } = rest;
    const tlsOptions: ConnectionOptions | undefined = tls ? {} : undefined;
    const clusterOptions: ClusterOptions = {
      clusterRetryStrategy: retryStrategy,
      enableOfflineQueue: enableOfflineQueue ?? true,
      lazyConnect: lazyConnect ?? false,
      retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
      retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
      retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
      slotsRefreshTimeout: 2_000,
      redisOptions: {
        ...perNode,
        connectionName: name,
        username: target.REDIS_USERNAME,
        password: target.REDIS_PASSWORD,
        tls: tlsOptions,
      },
    };
    client = new Cluster(
      nodes.map((node) => ({ host: node.host, port: node.port })),
      clusterOptions,
    );
  } else {
    client = new Redis(target.REDIS_URL, { connectionName: name, retryStrategy, ...rest });
  }
  let down = false;
  client.on('error', (err: Error) => {
    if (down) return;
    down = true;
    logger.warn({ err: err.message, client: name }, 'redis connection error');
  });
  client.on('ready', () => {
    if (down) logger.info({ client: name }, 'redis connection restored');
    down = false;
  });
  return client;
}

/**
 * A command failed in a way that may mean the slot map is stale (MOVED, ASK, CLUSTERDOWN, TRYAGAIN,
 * READONLY, a dropped connection): a cluster client refreshes it (ioredis coalesces concurrent
 * refreshes). ioredis follows MOVED by itself for single commands and for pipelines in which every
 * command was redirected, but not for a pipeline where only some were (e.g. XADDs + WAIT, whose
 * keyless WAIT a wrong node still answers): whoever runs such a pipeline calls this. Returns whether
 * a refresh was asked for. A standalone client: nothing to do.
 */
export function refreshOnTopologyError(client: StreamClient, err: unknown): boolean {
  if (!(client instanceof Cluster)) return false;
  const kind = redisErrorKind(err);
  if (kind !== 'moved' && kind !== 'ask' && kind !== 'clusterdown' && kind !== 'tryagain' && kind !== 'readonly' && kind !== 'connection')
    return false;
  client.refreshSlotsCache();
  return true;
}

/** Readiness check for a client: ready, or the state it is in. */
export function streamClientReadiness(client: StreamClient): () => string | undefined {
  return () => (client.status === 'ready' ? undefined : `redis ${client.status}`);
}

/** QUIT (flushing what is queued), falling back to a hard disconnect after `timeoutMs`. */
export async function closeStreamClient(client: StreamClient, timeoutMs = 2_000): Promise<void> {
  if (client.status === 'end') return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.quit().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  client.disconnect();
}
