import { consumersOf } from '@pitwall/streams';
import {
  createPosition,
  DEAD_LETTER_ORIGINAL_MAX_BYTES,
  deadLetterKey,
  encodePosition,
  POSITION_FIELD,
  PROCESSOR_GROUP,
  shardKey,
  shardKeys,
} from '@pitwall/contract';
import {
  createTestDatabase,
  scrapeMetric,
  sharedRedisUrl,
  sleep,
  startService,
  uniqueName,
  waitFor,
  type ServiceProcess,
} from '@pitwall/testkit';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@pitwall/platform';
import { positionAttributes, runMigrations } from '@pitwall/writer';
import { groupBacklog, imei, keysOf, makePositions, produce, query, rowCount, storedKeys, waitAllAcked } from './helpers.js';

// The built writer (services/writer/dist) as a real process against the run's Redis and PostgreSQL.

const redis = new Redis(sharedRedisUrl());
const running: ServiceProcess[] = [];

async function startWriter(databaseUrl: string, streamKey: string, env: Record<string, string> = {}): Promise<ServiceProcess> {
  const writer = await startService('writer', {
    DATABASE_URL: databaseUrl,
    REDIS_URL: sharedRedisUrl(),
    STREAM_KEY: streamKey,
    STREAM_SHARDS: '2',
    INSTANCE_ID: 'w1',
    WRITER_BLOCK_MS: '200',
    WRITER_STATS_INTERVAL_MS: '200',
    ...env,
  });
  running.push(writer);
  return writer;
}

/** positions_latest must hold the newest stored position of every device. */
async function expectLatestConsistent(databaseUrl: string): Promise<void> {
  const stale = await query(
    databaseUrl,
    `SELECT p.device_id FROM (SELECT device_id, max(recorded_at) AS newest FROM positions GROUP BY device_id) p
       LEFT JOIN positions_latest l USING (device_id) WHERE l.recorded_at IS DISTINCT FROM p.newest`,
  );
  expect(stale).toEqual([]);
  expect(await rowCount(databaseUrl, 'positions_latest')).toBe(
    Number((await query<{ n: string }>(databaseUrl, 'SELECT count(DISTINCT device_id) AS n FROM positions'))[0]?.n),
  );
}

/** Waits until a writer's session waits on a lock inside its batch transaction. */
async function waitForBlockedWriter(databaseUrl: string, instance: string): Promise<void> {
  await waitFor(`writer ${instance} blocked on a lock`, async () => {
    const rows = await query(databaseUrl, `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [
      `pitwall-writer:${instance}`,
    ]);
    return rows.length > 0;
  });
}

/** Holds a lock that stops every transaction writing `table` (inside it), until released. */
async function blockWrites(databaseUrl: string, table: 'positions' | 'positions_latest'): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN SHARE MODE`);
  return async () => {
    await client.query('ROLLBACK');
    await client.end();
  };
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((w) => w.proc.stop('SIGKILL')));
});
afterAll(() => redis.quit());

describe('writer process', () => {
  it('stores every position exactly once, even delivered twice, on both sides of a partition boundary', async () => {
    const databaseUrl = await createTestDatabase('writer_once');
    const streamKey = uniqueName('positions');
    const writer = await startWriter(databaseUrl, streamKey);
    const positions = makePositions(500, { devices: 25 });
    const midnight = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1);
    const boundary = [midnight - 1, midnight].map((t) =>
      createPosition({ deviceId: imei(77), recordedAtMs: BigInt(t), receivedAtMs: BigInt(t) }),
    );
    // The same position twice in the stream, as a device re-sending an unacknowledged packet does.
    await produce(redis, streamKey, 2, [...positions, ...boundary, positions[0]!]);
    await waitAllAcked(redis, streamKey, 2);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf([...positions, ...boundary]));
    const [stored] = await query<{ attributes: unknown; lat: number; speed_kmh: number; received_at: Date }>(
      databaseUrl,
      'SELECT attributes, lat, speed_kmh, received_at FROM positions WHERE device_id = $1 AND recorded_at = $2',
      [positions[7]!.deviceId, new Date(Number(positions[7]!.recordedAtMs))],
    );
    expect(stored).toEqual({
      attributes: JSON.parse(positionAttributes(positions[7]!)) as unknown,
      lat: positions[7]!.latE7 / 1e7,
      speed_kmh: positions[7]!.speedKmh,
      received_at: new Date(Number(positions[7]!.receivedAtMs)),
    });

    // Every entry delivered a second time (as after a crash between COMMIT and XACK).
    for (const key of shardKeys(streamKey, 2)) await redis.xgroup('SETID', key, PROCESSOR_GROUP, '0');
    await waitAllAcked(redis, streamKey, 2);
    expect(await rowCount(databaseUrl)).toBe(502);
    expect(await scrapeMetric(writer.metricsUrl, 'pitwall_writer_rows_total', { result: 'inserted' })).toBe(502);
    expect(await scrapeMetric(writer.metricsUrl, 'pitwall_writer_rows_total', { result: 'duplicate' })).toBe(1 + 503);

    const partitions = await query<{ ms: string; partition: string }>(
      databaseUrl,
      `SELECT (extract(epoch FROM recorded_at) * 1000)::bigint AS ms, tableoid::regclass::text AS partition FROM positions WHERE device_id = $1`,
      [imei(77)],
    );
    expect(new Set(partitions.map((p) => p.partition)).size).toBe(2);
    expect(partitions.every((p) => p.partition !== 'positions_default')).toBe(true);
    const [latest] = await query<{ recorded_at: Date }>(databaseUrl, 'SELECT recorded_at FROM positions_latest WHERE device_id = $1', [
      imei(77),
    ]);
    expect(latest?.recorded_at.getTime()).toBe(midnight);
  });

  it('moves poison entries to the dead-letter stream with the reason, and writes the entries around them', async () => {
    const databaseUrl = await createTestDatabase('writer_poison');
    const streamKey = uniqueName('positions');
    const writer = await startWriter(databaseUrl, streamKey, { STREAM_SHARDS: '1' });
    const key = shardKey(streamKey, 0);
    const good = makePositions(40, { devices: 4 });
    const now = BigInt(Date.now());
    const poison: [string, Buffer][] = [
      ['undecodable', Buffer.from('not a protobuf \xff', 'latin1')],
      ['invalid_device_id', Buffer.from(encodePosition(createPosition({ deviceId: 'abc', recordedAtMs: now })))],
      ['invalid_coordinates', Buffer.from(encodePosition(createPosition({ deviceId: imei(1), recordedAtMs: now, latE7: 950_000_000 })))],
      ['invalid_timestamp', Buffer.from(encodePosition(createPosition({ deviceId: imei(1), recordedAtMs: 1_000n })))],
    ];
    const ids = await produce(redis, streamKey, 1, good.slice(0, 20));
    const poisonIds: string[] = [];
    for (const [, bytes] of poison) poisonIds.push(String(await redis.xadd(key, '*', POSITION_FIELD, bytes)));
    poisonIds.push(String(await redis.xadd(key, '*', 'other', 'field')));
    // A big one (written before ingestion bounded entries): its dead letter keeps 4 KiB of it.
    const big = Buffer.alloc(20_000, 0xff);
    poisonIds.push(String(await redis.xadd(key, '*', POSITION_FIELD, big)));
    ids.push(...(await produce(redis, streamKey, 1, good.slice(20))));

    await waitAllAcked(redis, streamKey, 1);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf(good));
    const letters = await redis.xrangeBuffer(deadLetterKey(streamKey), '-', '+');
    const parsed = letters.map(([, fields]) => {
      const map = new Map<string, Buffer>();
      for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!.toString(), fields[i + 1]!);
      return map;
    });
    expect(parsed.map((l) => l.get('reason')?.toString())).toEqual([...poison.map(([reason]) => reason), 'undecodable', 'undecodable']);
    expect(parsed.map((l) => l.get('source_id')?.toString())).toEqual(poisonIds);
    expect(parsed.every((l) => l.get('source_stream')?.toString() === key)).toBe(true);
    expect(parsed.slice(0, 4).map((l) => l.get('orig.p'))).toEqual(poison.map(([, bytes]) => bytes));
    expect(parsed[4]!.get('orig.other')?.toString()).toBe('field');
    expect(parsed[5]!.get('orig.p')).toEqual(big.subarray(0, DEAD_LETTER_ORIGINAL_MAX_BYTES));
    expect(parsed[5]!.get('orig_bytes')?.toString()).toBe(String(big.length));
    expect(parsed[0]!.get('orig_bytes')).toBeUndefined();
    expect(parsed[0]!.get('error')?.toString()).toMatch(/undecodable Position/);
    expect(await scrapeMetric(writer.metricsUrl, 'pitwall_writer_dead_letters_total')).toBe(6);
    expect(await scrapeMetric(writer.metricsUrl, 'pitwall_writer_dead_letters_total', { reason: 'undecodable' })).toBe(3);
    expect(await scrapeMetric(writer.metricsUrl, 'pitwall_writer_entries_acked_total')).toBe(46);
  });

  it('re-processes its own pending entries after a SIGKILL mid-batch: every position exactly once', async () => {
    const databaseUrl = await createTestDatabase('writer_kill');
    const streamKey = uniqueName('positions');
    const first = await startWriter(databaseUrl, streamKey, { WRITER_BATCH_SIZE: '300' });
    const positions = makePositions(3_000, { devices: 100 });
    await produce(redis, streamKey, 2, positions.slice(0, 1_000));
    await waitAllAcked(redis, streamKey, 2);

    // The next batch stops inside its transaction, at its COPY; the writer dies there.
    const release = await blockWrites(databaseUrl, 'positions');
    await produce(redis, streamKey, 2, positions.slice(1_000));
    await waitForBlockedWriter(databaseUrl, 'w1');
    await first.proc.kill();
    await release();
    const { pending } = await groupBacklog(redis, streamKey, 2);
    expect(pending).toBeGreaterThan(0);
    expect(await rowCount(databaseUrl)).toBe(1_000);

    const restarted = await startWriter(databaseUrl, streamKey, { WRITER_BATCH_SIZE: '300' });
    await waitAllAcked(redis, streamKey, 2);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    expect(await scrapeMetric(restarted.metricsUrl, 'pitwall_writer_entries_read_total', { source: 'pending' })).toBe(pending);
    await expectLatestConsistent(databaseUrl);
  });

  it('takes over the pending entries of a writer that died, and removes the dead consumer', async () => {
    const databaseUrl = await createTestDatabase('writer_claim');
    const streamKey = uniqueName('positions');
    // positions_latest only every minute: full batches commit their rows and their entries wait,
    // unacknowledged, for it; the last, partial batch blocks on it. The writer dies there.
    const positions = makePositions(1_000, { devices: 50 });
    await produce(redis, streamKey, 2, positions);
    await runMigrations(databaseUrl, createLogger('test', 'silent'));
    const release = await blockWrites(databaseUrl, 'positions_latest');
    const dead = await startWriter(databaseUrl, streamKey, {
      INSTANCE_ID: 'dead',
      WRITER_BATCH_SIZE: '200',
      WRITER_LATEST_INTERVAL_MS: '60000',
    });
    await waitForBlockedWriter(databaseUrl, 'dead');
    await dead.proc.kill();
    await release();
    expect(await rowCount(databaseUrl)).toBeGreaterThan(0);
    expect((await groupBacklog(redis, streamKey, 2)).pending).toBeGreaterThan(0);

    const survivor = await startWriter(databaseUrl, streamKey, {
      INSTANCE_ID: 'survivor',
      WRITER_CLAIM_IDLE_MS: '1000',
      WRITER_CLAIM_INTERVAL_MS: '300',
      WRITER_CONSUMER_EXPIRY_MS: '1500',
    });
    await waitAllAcked(redis, streamKey, 2);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    await expectLatestConsistent(databaseUrl);
    expect(await scrapeMetric(survivor.metricsUrl, 'pitwall_writer_entries_read_total', { source: 'claimed' })).toBeGreaterThan(0);
    expect(await scrapeMetric(survivor.metricsUrl, 'pitwall_writer_rows_total', { result: 'duplicate' })).toBeGreaterThan(0);
    await waitFor('dead consumer removed', async () => {
      for (const key of shardKeys(streamKey, 2)) {
        if ((await consumersOf(redis, key, PROCESSOR_GROUP)).some((c) => c.name === 'dead')) return false;
      }
      return true;
    });
  });

  it('splits one stream between two writers with no duplicate and no gap', async () => {
    const databaseUrl = await createTestDatabase('writer_two');
    const streamKey = uniqueName('positions');
    const env = { STREAM_SHARDS: '1', WRITER_BATCH_SIZE: '50' };
    const writers = await Promise.all([
      startWriter(databaseUrl, streamKey, { ...env, INSTANCE_ID: 'a' }),
      startWriter(databaseUrl, streamKey, { ...env, INSTANCE_ID: 'b' }),
    ]);
    const positions = makePositions(4_000, { devices: 200 });
    for (let i = 0; i < positions.length; i += 200) {
      await produce(redis, streamKey, 1, positions.slice(i, i + 200));
      await sleep(10);
    }
    await waitAllAcked(redis, streamKey, 1);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    const inserted = await Promise.all(writers.map((w) => scrapeMetric(w.metricsUrl, 'pitwall_writer_rows_total', { result: 'inserted' })));
    expect(inserted.every((n) => n > 0)).toBe(true);
    expect(inserted[0]! + inserted[1]!).toBe(positions.length);
    for (const w of writers) {
      await expect(scrapeMetric(w.metricsUrl, 'pitwall_writer_rows_total', { result: 'duplicate' })).rejects.toThrow(/not exported/);
    }
  });

  it('trims the shard streams below what it has acknowledged, keeping WRITER_STREAM_RETENTION_MS of them', async () => {
    const databaseUrl = await createTestDatabase('writer_trim');
    const streamKey = uniqueName('positions');
    const key = shardKey(streamKey, 0);
    // 200 entries an hour old (beyond the retention), then 50 recent ones.
    await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM');
    const old = makePositions(200, { devices: 20, startMs: Date.now() - 7_200_000 });
    const base = Date.now() - 3_600_000;
    for (const [i, position] of old.entries())
      await redis.xadd(key, `${base}-${i + 1}`, POSITION_FIELD, Buffer.from(encodePosition(position)));
    const recent = makePositions(50, { devices: 5 });
    await produce(redis, streamKey, 1, recent);
    const writer = await startWriter(databaseUrl, streamKey, {
      STREAM_SHARDS: '1',
      WRITER_STREAM_RETENTION_MS: '600000',
      WRITER_TRIM_INTERVAL_MS: '100',
    });
    await waitAllAcked(redis, streamKey, 1);
    await waitFor('old entries trimmed', async () => (await redis.xlen(key)) === 50);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf([...old, ...recent]));
    expect(await scrapeMetric(writer.metricsUrl, 'pitwall_writer_stream_trimmed_entries_total')).toBe(200);
  });

  it('writes a trickle of positions in a few transactions once it has caught up (WRITER_BATCH_WAIT_MS)', async () => {
    const databaseUrl = await createTestDatabase('writer_trickle');
    const streamKey = uniqueName('positions');
    const writer = await startWriter(databaseUrl, streamKey, { STREAM_SHARDS: '1', WRITER_BATCH_WAIT_MS: '3000' });
    // One position every 25 ms for a second: read at once, each would be a transaction of its own.
    const positions = makePositions(40, { devices: 40 });
    for (const position of positions) {
      await produce(redis, streamKey, 1, [position]);
      await sleep(25);
    }
    await waitAllAcked(redis, streamKey, 1);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    const batches = await scrapeMetric(writer.metricsUrl, 'pitwall_writer_batch_size_entries_count');
    expect(batches).toBeLessThanOrEqual(3);
  });

  it('acknowledges a backlog that ends on a full batch at once, not after WRITER_BLOCK_MS', async () => {
    const databaseUrl = await createTestDatabase('writer_backlog_end');
    const streamKey = uniqueName('positions');
    // Exactly three full batches, waiting before the writer starts. Its acks wait for positions_latest,
    // which is due once a read comes back short: here the read after the third batch, which must not
    // block for the minute of WRITER_BLOCK_MS.
    const positions = makePositions(300, { devices: 30 });
    await produce(redis, streamKey, 1, positions);
    await startWriter(databaseUrl, streamKey, {
      STREAM_SHARDS: '1',
      WRITER_BATCH_SIZE: '100',
      WRITER_BLOCK_MS: '60000',
      WRITER_LATEST_INTERVAL_MS: '60000',
    });
    await waitAllAcked(redis, streamKey, 1, 20_000);
    expect(await storedKeys(databaseUrl)).toEqual(keysOf(positions));
    await expectLatestConsistent(databaseUrl);
  });

  it('on SIGTERM commits and acknowledges what it has read, then exits 0', async () => {
    const databaseUrl = await createTestDatabase('writer_term');
    const streamKey = uniqueName('positions');
    const writer = await startWriter(databaseUrl, streamKey, { WRITER_BATCH_SIZE: '100' });
    await produce(redis, streamKey, 2, makePositions(20_000, { devices: 500 }));
    await waitFor('some rows written', async () => (await rowCount(databaseUrl)) > 0);
    const exit = await writer.proc.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const backlog = await groupBacklog(redis, streamKey, 2);
    expect(backlog.pending).toBe(0);
    expect(await rowCount(databaseUrl)).toBe(20_000 - backlog.lag);
  });

  it('applies migrations with `npm run migrate` alone, idempotently, and then starts without migrating', async () => {
    const databaseUrl = await createTestDatabase('writer_migrate');
    const { ManagedProcess, REPO_ROOT } = await import('@pitwall/testkit');
    const migrate = () =>
      new ManagedProcess('npm', ['run', 'migrate', '-w', 'services/writer'], {
        name: 'migrate',
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATABASE_URL: databaseUrl },
      });
    const once = migrate();
    expect((await once.exited).code).toBe(0);
    expect(once.output()).toMatch(/migrations applied/);
    const twice = migrate();
    expect((await twice.exited).code).toBe(0);
    expect(twice.output()).toMatch(/schema is current/);
    const streamKey = uniqueName('positions');
    await startWriter(databaseUrl, streamKey, { MIGRATE_ON_START: 'false' });
    await produce(redis, streamKey, 2, makePositions(10));
    await waitAllAcked(redis, streamKey, 2);
    expect(await rowCount(databaseUrl)).toBe(10);
  });

  it.each([
    ['DATABASE_URL', 'postgres//nohost'],
    ['REDIS_URL', 'http://127.0.0.1:6379'],
  ])('exits non-zero naming a malformed %s', async (variable, value) => {
    const writer = await startService('writer', { [variable]: value }, { waitReady: false });
    const exit = await writer.proc.exited;
    expect(exit.code).toBe(78);
    expect(writer.proc.output()).toContain(`invalid configuration: ${variable}`);
  });
});
