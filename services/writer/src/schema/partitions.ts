import type { Logger } from '@pitwall/platform';
import type pg from 'pg';
import type { PartitionConfig } from '../config.js';
import { describePgError } from '../store/pg-errors.js';
import {
  boundLiteral,
  intervalStart,
  nextIntervalStart,
  overlaps,
  parsePartitionBound,
  partitionName,
  type PartitionRange,
} from './partition-ranges.js';

/** Session advisory lock of partition maintenance: one writer at a time, the others skip the round. */
export const PARTITION_LOCK_KEY = '5412980314117293';
/** Rows in the default partition up to this old get a partition of their own when retention keeps them forever. */
const BACKFILL_DAYS = 90;
const DAY_MS = 86_400_000;

interface Partition extends PartitionRange {
  name: string;
}

export interface MaintenanceResult {
  /** Another writer held the lock: nothing was done. */
  skipped: boolean;
  created: string[];
  dropped: string[];
  /** Rows moved out of the default partition into partitions created for them. */
  movedRows: number;
  failures: string[];
  partitions: number;
  defaultPartitionRows: number;
}

/**
 * Keeps `positions` partitioned: creates the current partition and PARTITIONS_AHEAD more, gives rows
 * that landed in the default partition (backlog from before any partition existed) their own
 * partition by moving them out before attaching it, and drops whole partitions beyond retention.
 * Each step is its own short transaction with a lock timeout, so writers never wait long on it.
 */
export class PartitionMaintainer {
  constructor(
    private readonly pool: pg.Pool,
    private readonly config: PartitionConfig,
    private readonly logger: Logger,
  ) {}

  async maintain(nowMs = Date.now()): Promise<MaintenanceResult> {
    const result: MaintenanceResult = {
      skipped: false,
      created: [],
      dropped: [],
      movedRows: 0,
      failures: [],
      partitions: 0,
      defaultPartitionRows: 0,
    };
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      const lock = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [PARTITION_LOCK_KEY]);
      if (lock.rows[0]?.locked !== true) return { ...result, skipped: true };
      try {
        await this.run(client, nowMs, result);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1::bigint)', [PARTITION_LOCK_KEY]);
      }
      return result;
    } catch (err) {
      broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      // A failed session may still hold the lock: destroy it rather than hand it back to the pool.
      client.release(broken);
    }
  }

  private async run(client: pg.PoolClient, nowMs: number, result: MaintenanceResult): Promise<void> {
    const { PARTITION_INTERVAL: interval, PARTITIONS_AHEAD: ahead, RETENTION_DAYS: retentionDays } = this.config;
    const partitions = await this.listPartitions(client);
    const cutoff = retentionDays > 0 ? intervalStart('day', nowMs) - retentionDays * DAY_MS : undefined;

    const starts = new Set<number>();
    let start = intervalStart(interval, nowMs);
    for (let i = 0; i <= ahead; i++) {
      starts.add(start);
      start = nextIntervalStart(interval, start);
    }
    const horizon = start;
    const backfillFrom = cutoff ?? intervalStart('day', nowMs) - BACKFILL_DAYS * DAY_MS;
    for (const backlog of await this.defaultPartitionIntervals(client, backfillFrom, horizon)) starts.add(backlog);

    for (const from of [...starts].sort((a, b) => a - b)) {
      const range = { from, to: nextIntervalStart(interval, from) };
      if (partitions.some((p) => overlaps(p, range))) continue;
      const name = partitionName(from);
      try {
        result.movedRows += await this.createPartition(client, name, range);
        partitions.push({ name, ...range });
        result.created.push(name);
      } catch (err) {
        result.failures.push(`create ${name}: ${describePgError(err)}`);
      }
    }

    if (cutoff !== undefined) {
      for (const partition of partitions.filter((p) => p.to <= cutoff)) {
        try {
          await this.transaction(client, `DROP TABLE ${client.escapeIdentifier(partition.name)}`);
          result.dropped.push(partition.name);
        } catch (err) {
          result.failures.push(`drop ${partition.name}: ${describePgError(err)}`);
        }
      }
      await this.transaction(client, 'DELETE FROM positions_default WHERE recorded_at < $1', [new Date(cutoff)]);
    }

    result.partitions = partitions.length - result.dropped.length;
    const count = await client.query<{ n: string }>('SELECT count(*) AS n FROM positions_default');
    result.defaultPartitionRows = Number(count.rows[0]?.n ?? 0);
    if (result.created.length > 0 || result.dropped.length > 0 || result.failures.length > 0) {
      this.logger.info(
        { created: result.created, dropped: result.dropped, movedRows: result.movedRows, failures: result.failures },
        'partition maintenance',
      );
    }
  }

  private async listPartitions(client: pg.PoolClient): Promise<Partition[]> {
    const rows = await this.transaction<{ name: string; bound: string }>(
      client,
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'positions'::regclass`,
    );
    const partitions: Partition[] = [];
    for (const row of rows) {
      const range = parsePartitionBound(row.bound);
      if (range === 'default') continue;
      if (range === undefined) {
        this.logger.warn({ partition: row.name, bound: row.bound }, 'partition bound not understood; left alone');
        continue;
      }
      partitions.push({ name: row.name, ...range });
    }
    return partitions;
  }

  /** Starts of the intervals that have rows in the default partition within [from, to). */
  private async defaultPartitionIntervals(client: pg.PoolClient, from: number, to: number): Promise<number[]> {
    const rows = await this.transaction<{ start: Date }>(
      client,
      `SELECT DISTINCT date_trunc($1, recorded_at) AS start FROM positions_default WHERE recorded_at >= $2 AND recorded_at < $3`,
      [this.config.PARTITION_INTERVAL, new Date(from), new Date(to)],
    );
    return rows.map((r) => r.start.getTime());
  }

  /** Creates and attaches one partition, first moving the rows the default partition holds for its range. */
  private async createPartition(client: pg.PoolClient, name: string, range: PartitionRange): Promise<number> {
    const table = client.escapeIdentifier(name);
    await client.query('BEGIN');
    try {
      await client.query("SET LOCAL lock_timeout = '5s'");
      await client.query(`CREATE TABLE ${table} (LIKE positions INCLUDING DEFAULTS)`);
      const moved = await client.query(
        `WITH moved AS (DELETE FROM positions_default WHERE recorded_at >= $1 AND recorded_at < $2 RETURNING *)
         INSERT INTO ${table} SELECT * FROM moved`,
        [new Date(range.from), new Date(range.to)],
      );
      await client.query(
        `ALTER TABLE positions ATTACH PARTITION ${table} FOR VALUES FROM (${boundLiteral(range.from)}) TO (${boundLiteral(range.to)})`,
      );
      await client.query('COMMIT');
      return moved.rowCount ?? 0;
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    }
  }

  /** One statement in its own transaction with UTC and a lock timeout. */
  private async transaction<R extends pg.QueryResultRow>(client: pg.PoolClient, sql: string, values: unknown[] = []): Promise<R[]> {
    await client.query('BEGIN');
    try {
      await client.query("SET LOCAL lock_timeout = '5s'");
      await client.query("SET LOCAL TimeZone = 'UTC'");
      const result = await client.query<R>(sql, values);
      await client.query('COMMIT');
      return result.rows;
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    }
  }
}
