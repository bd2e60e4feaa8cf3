import { createLogger } from '@pitwall/platform';
import { createTestDatabase } from '@pitwall/testkit';
import {
  createPool,
  MIGRATIONS_TABLE,
  PartitionMaintainer,
  PositionStore,
  runMigrations,
  toPositionRow,
  type PartitionConfig,
  type PositionRow,
  type TransactionKind,
} from '@pitwall/writer';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imei, makePositions, query, rowCount } from './helpers.js';

const logger = createLogger('writer-test', 'silent');
const partitionConfig: PartitionConfig = { PARTITION_INTERVAL: 'day', PARTITIONS_AHEAD: 2, RETENTION_DAYS: 0 };

function rows(count: number, options?: Parameters<typeof makePositions>[1]): PositionRow[] {
  return makePositions(count, options).map((p) => toPositionRow(p, Date.now()));
}

/** Partition each stored row landed in, by recorded_at (ms). */
async function partitionsOf(databaseUrl: string): Promise<Map<number, string>> {
  const found = await query<{ ms: string; partition: string }>(
    databaseUrl,
    `SELECT (extract(epoch FROM recorded_at) * 1000)::bigint AS ms, tableoid::regclass::text AS partition FROM positions`,
  );
  return new Map(found.map((r) => [Number(r.ms), r.partition]));
}

describe('schema and store against a real PostgreSQL', () => {
  let databaseUrl: string;
  let pool: pg.Pool;
  let store: PositionStore;
  const commits: TransactionKind[] = [];

  beforeAll(async () => {
    databaseUrl = await createTestDatabase('writer_store');
    pool = createPool({ databaseUrl, applicationName: 'writer-test', statementTimeoutMs: 30_000, logger });
    store = new PositionStore(pool, { onCommit: (path) => commits.push(path) });
  });
  afterAll(() => pool.end());

  it('applies migrations once, concurrently from several writers, and then has nothing to do', async () => {
    const first = await Promise.all([
      runMigrations(databaseUrl, logger),
      runMigrations(databaseUrl, logger),
      runMigrations(databaseUrl, logger),
    ]);
    expect(first.flat()).toEqual(['1795737600000_positions']);
    expect(await runMigrations(databaseUrl, logger)).toEqual([]);
    const [row] = await query<{ n: string }>(databaseUrl, `SELECT count(*) AS n FROM ${MIGRATIONS_TABLE}`);
    expect(Number(row?.n)).toBe(1);
    const maintainer = new PartitionMaintainer(pool, partitionConfig, logger);
    const results = await Promise.all([maintainer.maintain(), maintainer.maintain()]);
    // Under the advisory lock one creates today's partition and two ahead; the other skips or finds them made.
    expect(results.flatMap((r) => r.created)).toHaveLength(3);
    expect((await maintainer.maintain()).created).toEqual([]);
  });

  it('writes a batch with COPY and makes writing it again a no-op', async () => {
    const batch = rows(200, { devices: 20 });
    commits.length = 0;
    expect(await store.write(batch, 'copy')).toEqual({ inserted: 200, duplicates: 0, rejected: [], latestWritten: false });
    expect(commits).toEqual(['copy']);
    // Again on the COPY path: the unique key fails the COPY, the staging path skips every row.
    commits.length = 0;
    expect(await store.write(batch, 'copy', batch)).toEqual({ inserted: 0, duplicates: 200, rejected: [], latestWritten: true });
    expect(commits).toEqual(['staging']);
    expect(await store.write([...batch.slice(0, 10), ...rows(5, { startMs: Date.now() - 100_000 })], 'staging')).toEqual({
      inserted: 5,
      duplicates: 10,
      rejected: [],
      latestWritten: false,
    });
    expect(await rowCount(databaseUrl)).toBe(205);
  });

  it('does not fail a batch that holds the same position twice', async () => {
    const [one] = rows(1, { startMs: Date.now() - 200_000 });
    const before = await rowCount(databaseUrl);
    expect(await store.write([one!, one!, { ...one!, lat: 1 }], 'copy')).toMatchObject({ inserted: 1, duplicates: 2, rejected: [] });
    expect(await rowCount(databaseUrl)).toBe(before + 1);
  });

  it('keeps the newest position per device in positions_latest, whatever order batches arrive in', async () => {
    const device = imei(900);
    const at = (ms: number): PositionRow => ({ ...rows(1)[0]!, deviceId: device, recordedAtMs: ms, lat: ms % 90 });
    const t = Date.now() - 60_000;
    const newer = [at(t), at(t + 2_000)];
    expect(await store.write(newer, 'copy', newer)).toMatchObject({ latestWritten: true });
    // An older position written later (another writer, a redelivery) does not move it back.
    await store.write([at(t + 1_000)], 'copy', [at(t + 1_000)]);
    await store.writeLatest([at(t - 5_000)]);
    const [latest] = await query<{ recorded_at: Date }>(databaseUrl, 'SELECT recorded_at FROM positions_latest WHERE device_id = $1', [
      device,
    ]);
    expect(latest?.recorded_at.getTime()).toBe(t + 2_000);
  });

  it('isolates a row PostgreSQL rejects and writes the rest of its batch', async () => {
    const batch = rows(9, { startMs: Date.now() - 300_000 });
    batch[4] = { ...batch[4]!, attributes: '{not json' };
    const result = await store.write(batch, 'copy', batch);
    expect(result.inserted).toBe(8);
    expect(result.latestWritten).toBe(false);
    expect(result.rejected).toEqual([{ index: 4, error: expect.stringMatching(/^22P02 invalid input syntax for type json/) as unknown }]);
  });

  it('stores positions on both sides of a partition boundary, each in its own partition', async () => {
    const midnight = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1);
    const [row] = rows(1);
    const before = { ...row!, deviceId: imei(901), recordedAtMs: midnight - 1 };
    const after = { ...row!, deviceId: imei(901), recordedAtMs: midnight };
    expect(await store.write([before, after], 'copy')).toMatchObject({ inserted: 2 });
    const partitions = await partitionsOf(databaseUrl);
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');
    expect(partitions.get(midnight - 1)).toBe(`positions_p${day(midnight - 1)}`);
    expect(partitions.get(midnight)).toBe(`positions_p${day(midnight)}`);
  });

  it('keeps rows without a partition in the default one, then moves them into a partition created over them', async () => {
    const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000);
    const old = Date.UTC(tenDaysAgo.getUTCFullYear(), tenDaysAgo.getUTCMonth(), tenDaysAgo.getUTCDate(), 12);
    const oldPartition = `positions_p${tenDaysAgo.toISOString().slice(0, 10).replaceAll('-', '')}`;
    const [row] = rows(1);
    const backlog = [0, 1, 2].map((i) => ({ ...row!, deviceId: imei(902 + i), recordedAtMs: old + i }));
    await store.write(backlog, 'copy');
    expect((await partitionsOf(databaseUrl)).get(old)).toBe('positions_default');
    // Just after midnight UTC the rows earlier tests wrote an hour back are in the default partition
    // too (the partitions were made from the new day on): every row there must move, not only these.
    const inDefault = await rowCount(databaseUrl, 'positions_default');
    expect(inDefault).toBeGreaterThanOrEqual(3);
    const result = await new PartitionMaintainer(pool, partitionConfig, logger).maintain();
    expect(result.created).toContain(oldPartition);
    expect(result.movedRows).toBe(inDefault);
    expect(result.defaultPartitionRows).toBe(0);
    const partitions = await partitionsOf(databaseUrl);
    expect([0, 1, 2].map((i) => partitions.get(old + i))).toEqual([oldPartition, oldPartition, oldPartition]);
    // A later duplicate of a moved row is still a no-op: the key is enforced in the new partition.
    expect(await store.write([backlog[0]!], 'copy')).toMatchObject({ inserted: 0, duplicates: 1 });
  });

  it('drops partitions and default rows beyond retention', async () => {
    const maintainer = new PartitionMaintainer(pool, { ...partitionConfig, RETENTION_DAYS: 5 }, logger);
    const [row] = rows(1);
    await store.write([{ ...row!, deviceId: imei(910), recordedAtMs: Date.UTC(2025, 0, 1) }], 'copy');
    const total = await rowCount(databaseUrl);
    const result = await maintainer.maintain();
    // The partition of ten days ago (3 rows) and a default-partition row of 2025 go.
    expect(result.dropped).toHaveLength(1);
    expect(result.dropped[0]).toMatch(/^positions_p\d{8}$/);
    expect(await rowCount(databaseUrl)).toBe(total - 4);
    expect(await rowCount(databaseUrl, 'positions_default')).toBe(0);
  });
});
