import { once } from 'node:events';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { POSITION_COLUMNS } from './binary-copy.js';
import { encodeBatch, subBatch, type EncodedBatch } from './copy-batch.js';
import { classifyPgError, describePgError, sqlState } from './pg-errors.js';
import type { PositionRow } from './position-row.js';
import { step } from '../batch-trace.js';

/**
 * How a batch reaches `positions`:
 * - `copy`: COPY straight into `positions`. Fastest, but one existing key fails the whole COPY, so
 *   the batch is then written again on the staging path. For entries read for the first time.
 * - `staging`: COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING. For
 *   redeliveries (pending, claimed, retried), where duplicates are expected.
 */
export type WritePath = 'copy' | 'staging';

/** Label of a committed transaction: a batch by its path, or an upsert of positions_latest alone. */
export type TransactionKind = WritePath | 'latest';

export interface WriteResult {
  inserted: number;
  duplicates: number;
  /** Rows PostgreSQL rejected (by index into the rows given), isolated by splitting the batch. */
  rejected: { index: number; error: string }[];
  /** The positions_latest rows given were upserted in the batch's transaction. */
  latestWritten: boolean;
}

export interface PositionStoreHooks {
  /** Called after every commit with what it committed and the transaction's duration. */
  onCommit?: (kind: TransactionKind, seconds: number) => void;
}

const COLUMN_LIST = POSITION_COLUMNS.join(', ');
const STAGING_TABLE = 'writer_staging';
const CREATE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING_TABLE} (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`;
const COPY_DIRECT = `COPY positions (${COLUMN_LIST}) FROM STDIN (FORMAT binary)`;
const COPY_STAGING = `COPY ${STAGING_TABLE} (${COLUMN_LIST}) FROM STDIN (FORMAT binary)`;
const INSERT_FROM_STAGING = `INSERT INTO positions (${COLUMN_LIST}) SELECT ${COLUMN_LIST} FROM ${STAGING_TABLE} ON CONFLICT DO NOTHING`;
// Rows in device order: writers that touch the same devices lock them in the same order and so never
// deadlock. Only a newer position replaces the stored one, so writers may upsert in any order.
const UPSERT_LATEST = `
  INSERT INTO positions_latest AS l (${COLUMN_LIST})
  SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::float8[], $5::float8[],
                       $6::real[], $7::real[], $8::real[], $9::smallint[], $10::jsonb[])
  ON CONFLICT (device_id) DO UPDATE SET
    recorded_at = EXCLUDED.recorded_at, received_at = EXCLUDED.received_at, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
    altitude_m = EXCLUDED.altitude_m, speed_kmh = EXCLUDED.speed_kmh, heading_deg = EXCLUDED.heading_deg,
    satellites = EXCLUDED.satellites, attributes = EXCLUDED.attributes
  WHERE l.recorded_at < EXCLUDED.recorded_at`;

/** Folds rows into a map of the newest row per device (in place). */
export function mergeNewest<R extends { deviceId: string; recordedAtMs: number }>(into: Map<string, R>, rows: Iterable<R>): Map<string, R> {
  for (const row of rows) {
    const seen = into.get(row.deviceId);
    if (seen === undefined || seen.recordedAtMs < row.recordedAtMs) into.set(row.deviceId, row);
  }
  return into;
}

function latestParameters(newest: Iterable<PositionRow>): unknown[] {
  const rows = [...mergeNewest(new Map<string, PositionRow>(), newest).values()].sort((a, b) =>
    a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0,
  );
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return [
    rows.map((r) => r.deviceId),
    rows.map((r) => iso(r.recordedAtMs)),
    rows.map((r) => iso(r.receivedAtMs)),
    rows.map((r) => r.lat),
    rows.map((r) => r.lon),
    rows.map((r) => r.altitudeM),
    rows.map((r) => r.speedKmh),
    rows.map((r) => r.headingDeg),
    rows.map((r) => r.satellites),
    rows.map((r) => r.attributes),
  ];
}

function copyIn(client: pg.PoolClient, sql: string, data: Buffer): Promise<number> {
  return step('writer.copy', async () => {
    const stream = client.query(copyFrom(sql));
    stream.end(data);
    await once(stream, 'finish');
    return stream.rowCount;
  });
}

/**
 * Writes batches of positions to PostgreSQL: one transaction per batch that stores every row not
 * stored yet, optionally moving `positions_latest` forward in the same transaction. Idempotent:
 * writing a batch again (after a crash between commit and XACK, or a redelivery) adds nothing.
 * Transient failures are thrown for the caller to retry; rows with values PostgreSQL rejects are
 * isolated and reported, never retried.
 */
export class PositionStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly hooks: PositionStoreHooks = {},
  ) {}

  /**
   * Writes a batch. `latest` (newest rows per device, of this batch and earlier ones) is upserted
   * into positions_latest in the same transaction; when rows had to be isolated it is not, and
   * `latestWritten` is false (call writeLatest).
   */
  async write(batch: readonly PositionRow[] | EncodedBatch, path: WritePath, latest?: Iterable<PositionRow>): Promise<WriteResult> {
    const encoded = 'copyData' in batch ? batch : encodeBatch(batch);
    const result: WriteResult = { inserted: 0, duplicates: 0, rejected: [], latestWritten: false };
    const latestParams = latest === undefined ? undefined : latestParameters(latest);
    try {
      result.inserted = await this.writeOnce(encoded, path, latestParams);
      result.duplicates = encoded.length - result.inserted;
      result.latestWritten = latestParams !== undefined;
    } catch (err) {
      if (classifyPgError(err) !== 'data') throw err;
      await this.bisect(encoded, 0, encoded.length, path, result);
    }
    return result;
  }

  /** Upserts newest rows per device into positions_latest in a transaction of its own. */
  async writeLatest(latest: Iterable<PositionRow>): Promise<void> {
    const params = latestParameters(latest);
    await this.transaction('latest', async (client) => {
      await client.query(UPSERT_LATEST, params);
    });
  }

  /** Splits a batch that holds a row PostgreSQL rejects: the halves that are fine commit, the offending rows end up alone. */
  private async bisect(batch: EncodedBatch, start: number, end: number, path: WritePath, result: WriteResult): Promise<void> {
    const slice = subBatch(batch, start, end);
    try {
      const inserted = await this.writeOnce(slice, path, undefined);
      result.inserted += inserted;
      result.duplicates += slice.length - inserted;
    } catch (err) {
      if (classifyPgError(err) !== 'data') throw err;
      if (slice.length === 1) {
        result.rejected.push({ index: start, error: describePgError(err) });
        return;
      }
      const middle = start + Math.ceil(slice.length / 2);
      await this.bisect(batch, start, middle, path, result);
      await this.bisect(batch, middle, end, path, result);
    }
  }

  /** One transaction; returns the rows inserted (the rest were duplicates). */
  private async writeOnce(batch: EncodedBatch, path: WritePath, latest: unknown[] | undefined): Promise<number> {
    if (path === 'copy') {
      try {
        // Without positions_latest the COPY alone is the transaction (autocommit): one round trip.
        if (!latest) return await this.autocommit('copy', (client) => copyIn(client, COPY_DIRECT, batch.copyData));
        return await this.transaction('copy', async (client) => {
          const inserted = await copyIn(client, COPY_DIRECT, batch.copyData);
          await client.query(UPSERT_LATEST, latest);
          return inserted;
        });
      } catch (err) {
        if (classifyPgError(err) !== 'duplicate') throw err;
      }
    }
    return this.transaction('staging', async (client) => {
      await client.query(CREATE_STAGING);
      await copyIn(client, COPY_STAGING, batch.copyData);
      const inserted = await client.query(INSERT_FROM_STAGING);
      if (latest) await client.query(UPSERT_LATEST, latest);
      return inserted.rowCount ?? 0;
    });
  }

  /** One statement that is its own transaction. */
  private autocommit<T>(kind: TransactionKind, statement: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.onConnection(kind, async (client, discard) => {
      try {
        return await statement(client);
      } catch (err) {
        // A statement error leaves the session usable; anything else (a lost connection) does not.
        if (sqlState(err) === undefined) discard(err);
        throw err;
      }
    });
  }

  private transaction<T>(kind: TransactionKind, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.onConnection(kind, async (client, discard) => {
      await client.query('BEGIN');
      try {
        const value = await work(client);
        await step('writer.commit', () => client.query('COMMIT'));
        return value;
      } catch (err) {
        // A connection that cannot even roll back is discarded instead of returned to the pool.
        await client.query('ROLLBACK').catch(discard);
        throw err;
      }
    });
  }

  /** Runs `commit` on a pooled connection and reports it; `discard` keeps the connection out of the pool. */
  private async onConnection<T>(
    kind: TransactionKind,
    commit: (client: pg.PoolClient, discard: (err: unknown) => void) => Promise<T>,
  ): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const discard = (err: unknown): void => {
      broken = err instanceof Error ? err : new Error(String(err));
    };
    try {
      const started = process.hrtime.bigint();
      const value = await commit(client, discard);
      this.hooks.onCommit?.(kind, Number(process.hrtime.bigint() - started) / 1e9);
      return value;
    } finally {
      client.release(broken);
    }
  }
}
