import type { Logger, Service } from '@pitwall/platform';
import pg from 'pg';

export interface PoolOptions {
  databaseUrl: string;
  applicationName: string;
  statementTimeoutMs: number;
  max?: number;
  logger: Logger;
}

/**
 * The writer's PostgreSQL pool: a few connections (one batch transaction at a time, plus probes and
 * partition maintenance), bounded waits so an outage surfaces as errors the loop retries, and
 * errors of idle connections logged instead of crashing the process.
 */
export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    application_name: options.applicationName,
    max: options.max ?? 4,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs,
    keepAlive: true,
  });
  pool.on('error', (err) => options.logger.debug({ err: err.message }, 'idle postgres connection failed'));
  return pool;
}

/** Closes the pool last (after the loop that uses it). */
export function poolService(pool: pg.Pool): Service {
  let closing: Promise<void> | undefined;
  return {
    name: 'postgres',
    start: () => Promise.resolve(),
    close: () => (closing ??= pool.end()),
  };
}
