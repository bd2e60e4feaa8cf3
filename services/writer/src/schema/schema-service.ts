import { setTimeout as sleep } from 'node:timers/promises';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import type { WriterMetrics } from '../metrics.js';
import { describePgError, isConnectionError } from '../store/pg-errors.js';
import { runMigrations } from './migrations.js';
import type { PartitionMaintainer } from './partitions.js';

export interface SchemaServiceOptions {
  databaseUrl: string;
  /** Apply migrations at start (MIGRATE_ON_START). */
  migrate: boolean;
  maintainer: PartitionMaintainer;
  maintenanceIntervalMs: number;
  metrics: WriterMetrics;
  logger: Logger;
  retryInitialMs: number;
  retryMaxMs: number;
}

/**
 * The schema part of the writer: applies the migrations at start (waiting for PostgreSQL to be
 * reachable, failing the start on any other error), then keeps partitions ahead and retention
 * applied on a timer.
 */
export class SchemaService implements Service {
  readonly name = 'schema';
  private migrated = false;
  private timer: NodeJS.Timeout | undefined;
  private maintenance: Promise<void> | undefined;
  private readonly stopSignal = new AbortController();

  constructor(private readonly options: SchemaServiceOptions) {}

  readinessProblem(): string | undefined {
    return this.migrated ? undefined : 'migrations not applied yet';
  }

  async start(): Promise<void> {
    const { migrate, logger, databaseUrl, retryInitialMs, retryMaxMs } = this.options;
    for (let attempt = 0; migrate && !this.stopSignal.signal.aborted; attempt++) {
      try {
        const applied = await runMigrations(databaseUrl, logger);
        logger.info({ applied }, applied.length > 0 ? 'migrations applied' : 'schema is current');
        break;
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        if (attempt === 0 || attempt % 20 === 0) logger.warn({ err: describePgError(err) }, 'postgres unreachable; migrations wait for it');
        const delay = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(attempt, 30));
        await sleep(delay, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
      }
    }
    this.migrated = true;
    await this.maintainOnce();
    this.timer = setInterval(() => void this.maintainOnce(), this.options.maintenanceIntervalMs);
    this.timer.unref();
  }

  close = idempotent(async () => {
    this.stopSignal.abort();
    clearInterval(this.timer);
    await this.maintenance;
  });

  /** One maintenance round; failures are logged and counted, the next round tries again. */
  private maintainOnce(): Promise<void> {
    this.maintenance ??= (async () => {
      const { maintainer, metrics, logger } = this.options;
      try {
        const result = await maintainer.maintain();
        if (result.skipped) {
          metrics.partitionMaintenance.inc({ result: 'skipped' });
          return;
        }
        metrics.partitionMaintenance.inc({ result: result.failures.length > 0 ? 'failed' : 'ok' });
        metrics.partitions.set(result.partitions);
        metrics.defaultPartitionRows.set(result.defaultPartitionRows);
      } catch (err) {
        metrics.partitionMaintenance.inc({ result: 'failed' });
        logger.warn({ err: describePgError(err) }, 'partition maintenance failed; next round');
      }
    })().finally(() => (this.maintenance = undefined));
    return this.maintenance;
  }
}
