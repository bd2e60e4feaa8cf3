import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';

export interface RedisClientOptions extends RedisOptions {
  /** Shown in CLIENT LIST and in logs, e.g. `writer:consumer`. */
  name: string;
  logger: Logger;
}

/**
 * An ioredis client with the telemetry plane's defaults: a connection name, reconnection with capped
 * exponential backoff (forever: Redis coming back must heal every service by itself), and errors
 * logged once per outage instead of once per retry.
 */
export function createRedisClient(url: string, options: RedisClientOptions): Redis {
  const { name, logger, ...rest } = options;
  const client = new Redis(url, {
    connectionName: name,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    ...rest,
  });
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

/** Readiness check for a client: ready, or the state it is in. */
export function redisReadiness(client: Redis): () => string | undefined {
  return () => (client.status === 'ready' ? undefined : `redis ${client.status}`);
}

/** QUIT (flushing what is queued), falling back to a hard disconnect after `timeoutMs`. */
export async function closeRedisClient(client: Redis, timeoutMs = 2_000): Promise<void> {
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
