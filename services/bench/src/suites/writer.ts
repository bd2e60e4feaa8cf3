import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { createPosition, encodePosition, POSITION_FIELD, PROCESSOR_GROUP, shardKeys, shardOf, type Position } from '@pitwall/contract';
import { createLogger } from '@pitwall/platform';
import { groupsOf } from '@pitwall/streams';
import { PostgresServer, RedisServer, scrapeMetric, startService, waitFor } from '@pitwall/testkit';
import { createPool, encodeBinaryCopy, PartitionMaintainer, POSITION_COLUMNS, runMigrations, toPositionRow } from '@pitwall/writer';
import { Redis } from 'ioredis';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { cpuSecondsOf, treeCpuSecondsOf } from '../proc-stat.js';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';

// Writer: positions per second made durable by the built writer process (stream read, rows committed
// in PostgreSQL; entries XACKed after), against the ceiling of a raw binary COPY of the same rows into
// an identical `positions` table (same partitions and primary key) in the same PostgreSQL, same run.
// The stream is filled beforehand; the writer is timed from its first delivery to its last commit,
// and everything must be acknowledged afterwards.
//
// PostgreSQL runs with production durability: fsync=on, synchronous_commit=on, full_page_writes=on
// (testkit's servers turn fsync off, so this suite starts its own). Redis without persistence (the
// writer's XACKs are not what is measured).
//
// Two CPU layouts:
// - shared (the target): every process on every CPU, as the rest of `make bench` runs. On a 2-CPU
//   machine the writer's decoding, Redis and the database then compete for the same CPUs, which the
//   raw COPY (the database alone) does not have to.
// - dedicated (when taskset works and there are 2 CPUs or more): PostgreSQL pinned to CPU 0, the writer
//   and this process to CPU 1, Redis free: what one CPU of writer feeds a database that has its own.
// Every figure is the best of several interleaved rounds: other load on the machine only slows runs.
// The ratio of each round (writer and its ceiling measured back to back) is reported too: on a shared
// virtual machine the speed of the CPUs drifts between rounds, and the spread shows by how much.

const SHARDS = 2;
const DEVICES = 500;
const DB_CPU = '0';
const CLIENT_CPU = '1';
const ALL_CPUS = '0-1';
const logger = createLogger('bench-writer', 'silent');

type Layout = 'dedicated' | 'shared';

function canPin(): boolean {
  if (cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Sets the CPU affinity of a process and every thread it has (`taskset -a -p`). */
function pin(pid: number, cpuList: string): void {
  execFileSync('taskset', ['-a', '-pc', cpuList, String(pid)], { stdio: 'ignore' });
}

/** A throwaway cluster with production durability (fsync, synchronous commit, full page writes). */
async function startDurablePostgres(): Promise<{ url: (db: string) => string; pid: number; stop: () => Promise<void> }> {
  const server = await PostgresServer.start({
    durable: true,
    settings: { shared_buffers: '256MB', max_wal_size: '4GB', track_commit_timestamp: 'on' },
  });
  return {
    url: (db) => server.url(db),
    pid: server.pid ?? -1,
    stop: () => server.destroy(),
  };
}

/** A race of DEVICES cars at 1 Hz that crosses midnight UTC, so rows land in two partitions. */
function positions(count: number): Position[] {
  const midnight = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const start = midnight - Math.floor(count / DEVICES / 2) * 1000;
  return Array.from({ length: count }, (_, i) => {
    const t = start + Math.floor(i / DEVICES) * 1000;
    return createPosition({
      deviceId: String(352_093_080_000_000 + (i % DEVICES)),
      recordedAtMs: BigInt(t),
      receivedAtMs: BigInt(t + 350),
      latE7: 436_000_000 + (i % 100_000),
      lonE7: 39_000_000 + (i % 77_777),
      altitudeM: 120,
      speedKmh: 140 + (i % 60),
      headingDeg: i % 360,
      satellites: 12,
      codec: 2,
      io: [
        { id: 239, width: 1, value: 1n },
        { id: 240, width: 1, value: 1n },
        { id: 21, width: 1, value: 5n },
        { id: 66, width: 2, value: 24_000n },
        { id: 16, width: 4, value: BigInt(1_000_000 + i) },
      ],
    });
  });
}

async function createSchema(url: string): Promise<void> {
  await runMigrations(url, logger);
  const pool = createPool({ databaseUrl: url, applicationName: 'bench', statementTimeoutMs: 600_000, logger });
  try {
    await new PartitionMaintainer(pool, { PARTITION_INTERVAL: 'day', PARTITIONS_AHEAD: 2, RETENTION_DAYS: 0 }, logger).maintain();
  } finally {
    await pool.end();
  }
}

/** CPU microseconds per row of each part of a run. */
interface RowCpu {
  writer: number;
  redis: number;
  postgres: number;
}

/** Raw binary COPY of every row into `table` in one transaction: rows/s, and PostgreSQL's CPU per row. */
async function copyCeiling(
  url: string,
  postgresPid: number,
  table: string,
  data: Buffer,
  rows: number,
): Promise<{ rate: number; postgresCpu: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const cpuBefore = treeCpuSecondsOf(postgresPid);
    const started = performance.now();
    await client.query('BEGIN');
    const stream = client.query(copyFrom(`COPY ${table} (${POSITION_COLUMNS.join(', ')}) FROM STDIN (FORMAT binary)`));
    await new Promise<void>((resolve, reject) => {
      stream.on('finish', resolve);
      stream.on('error', reject);
      stream.end(data);
    });
    await client.query('COMMIT');
    const seconds = (performance.now() - started) / 1000;
    const postgresCpu = ((treeCpuSecondsOf(postgresPid) - cpuBefore) * 1e6) / rows;
    if (stream.rowCount !== rows) throw new Error(`COPY stored ${stream.rowCount} of ${rows} rows`);
    return { rate: rows / seconds, postgresCpu };
  } finally {
    await client.end();
  }
}

async function fillStream(redis: Redis, streamKey: string, all: readonly Position[]): Promise<void> {
  const keys = shardKeys(streamKey, SHARDS);
  for (const key of keys) await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM');
  for (let i = 0; i < all.length; i += 5_000) {
    const pipeline = redis.pipeline();
    for (const p of all.slice(i, i + 5_000))
      pipeline.xadd(keys[shardOf(p.deviceId, SHARDS)]!, '*', POSITION_FIELD, Buffer.from(encodePosition(p)));
    await pipeline.exec();
  }
}

/** When the last row of `positions` was committed (PostgreSQL runs with track_commit_timestamp), after checking every row is there. */
async function lastCommitMs(url: string, rows: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: result } = await client.query<{ n: string; at: string }>(
      'SELECT count(*) AS n, extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) * 1000 AS at FROM positions',
    );
    const [row] = result;
    if (Number(row?.n) !== rows) throw new Error(`positions holds ${row?.n} of ${rows} rows`);
    return Number(row?.at);
  } finally {
    await client.end();
  }
}

/** Entries of group `processor` not delivered yet (lag) and delivered but not acknowledged (pending). */
async function backlog(redis: Redis, streamKey: string): Promise<{ undelivered: number; pending: number }> {
  let undelivered = 0;
  let pending = 0;
  for (const key of shardKeys(streamKey, SHARDS)) {
    const group = (await groupsOf(redis, key))?.find((g) => g.name === PROCESSOR_GROUP);
    if (group === undefined) continue;
    if (group.lag === undefined) throw new Error(`Redis gives no lag for ${key}: the benchmark cannot see the first delivery`);
    undelivered += group.lag;
    pending += group.pending;
  }
  return { undelivered, pending };
}

interface Servers {
  postgres: Awaited<ReturnType<typeof startDurablePostgres>>;
  redis: RedisServer;
  redisPid: number;
  client: Redis;
  admin: pg.Client;
  databases: number;
}

async function freshDatabase(servers: Servers): Promise<string> {
  const name = `bench_${servers.databases++}`;
  await servers.admin.query(`CREATE DATABASE ${name}`);
  const url = servers.postgres.url(name);
  await createSchema(url);
  return url;
}

/**
 * Every timed run starts right after a checkpoint: the dirty buffers of the runs before are on disk
 * and no checkpoint is spreading its writes over this one (a timed checkpoint writes for most of
 * checkpoint_timeout), so one run does not pay for the I/O of another.
 */
async function settle(servers: Servers): Promise<void> {
  await servers.admin.query('CHECKPOINT');
}

/** Puts PostgreSQL (and the backends it forks from now on), Redis and this process on their CPUs. */
function applyLayout(servers: Servers, layout: Layout): void {
  pin(servers.postgres.pid, layout === 'dedicated' ? DB_CPU : ALL_CPUS);
  pin(servers.redisPid, ALL_CPUS);
  pin(process.pid, layout === 'dedicated' ? CLIENT_CPU : ALL_CPUS);
}

/** The writer process drains a stream filled beforehand: rows/s, and the CPU per row of each part. */
async function writerRun(
  servers: Servers,
  layout: Layout | undefined,
  all: readonly Position[],
  env: Record<string, string>,
  log: BenchContext['log'],
): Promise<{ rate: number; cpu: RowCpu }> {
  const streamKey = `bench:${servers.databases}`;
  const databaseUrl = await freshDatabase(servers);
  await fillStream(servers.client, streamKey, all);
  await settle(servers);
  const writer = await startService(
    'writer',
    {
      DATABASE_URL: databaseUrl,
      REDIS_URL: servers.redis.url,
      STREAM_KEY: streamKey,
      STREAM_SHARDS: String(SHARDS),
      INSTANCE_ID: 'bench',
      LOG_LEVEL: 'warn',
      MIGRATE_ON_START: 'false',
      ...env,
    },
    { waitReady: false },
  );
  if (layout !== undefined) pin(writer.proc.pid, layout === 'dedicated' ? CLIENT_CPU : ALL_CPUS);
  try {
    // Timed from the first delivery to the commit of the last row: rows are durable once committed.
    // Nothing asks the writer anything while it runs (scraping its /metrics every few ms would cost it
    // CPU): the first delivery shows in Redis, the last commit in PostgreSQL's commit timestamps.
    // Acknowledgements follow (held for positions_latest up to WRITER_LATEST_INTERVAL_MS, and the last
    // ones after a read finds the stream empty): checked, and reported apart, not in the rate.
    // CPU time from /proc: of the writer, Redis and PostgreSQL (postmaster and backends), from the
    // first delivery until everything is acknowledged. Redis and PostgreSQL idle until the first
    // delivery and are read once before it (PostgreSQL's takes a scan of /proc); the writer, whose
    // start-up is not counted, at every poll.
    const cpuNow = () => ({
      writer: cpuSecondsOf(writer.proc.pid),
      redis: cpuSecondsOf(servers.redisPid),
      postgres: treeCpuSecondsOf(servers.postgres.pid),
    });
    const cpuBefore = cpuNow();
    let startedAtMs = 0;
    while (startedAtMs === 0) {
      if (!writer.proc.running) throw new Error(`writer exited:\n${writer.proc.output()}`);
      const now = Date.now();
      if ((await backlog(servers.client, streamKey)).undelivered < all.length) startedAtMs = now;
      else {
        cpuBefore.writer = cpuSecondsOf(writer.proc.pid);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    await waitFor(
      'every entry acknowledged',
      async () => {
        if (!writer.proc.running) throw new Error(`writer exited:\n${writer.proc.output()}`);
        const { undelivered, pending } = await backlog(servers.client, streamKey);
        return undelivered + pending === 0;
      },
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    const ackedAtMs = Date.now();
    const cpuAfter = cpuNow();
    const perRow = (part: keyof RowCpu) => ((cpuAfter[part] - cpuBefore[part]) * 1e6) / all.length;
    const cpu = { writer: perRow('writer'), redis: perRow('redis'), postgres: perRow('postgres') };
    const inserted = await scrapeMetric(writer.metricsUrl, 'pitwall_writer_rows_total', { result: 'inserted' });
    if (inserted !== all.length) throw new Error(`writer inserted ${inserted} of ${all.length} rows`);
    const committedAtMs = await lastCommitMs(databaseUrl, all.length);
    const batches = await scrapeMetric(writer.metricsUrl, 'pitwall_writer_batch_size_entries_count');
    const rate = all.length / ((committedAtMs - startedAtMs) / 1000);
    log(
      `  ${Math.round(rate).toLocaleString('en-US')} rows/s (${batches} batches; every XACK seen ${Math.round(ackedAtMs - committedAtMs)} ms after the last commit); ` +
        `CPU per row: writer ${cpu.writer.toFixed(1)} µs, Redis ${cpu.redis.toFixed(1)} µs, PostgreSQL ${cpu.postgres.toFixed(1)} µs`,
    );
    return { rate, cpu };
  } finally {
    await writer.proc.stop();
  }
}

export const writerSuite: BenchSuite = {
  name: 'writer',
  async run({ quick, log }: BenchContext): Promise<BenchResult[]> {
    const rows = quick ? 100_000 : 400_000;
    const rounds = quick ? 1 : 5;
    const all = positions(rows);
    const data = encodeBinaryCopy(all.map((p) => toPositionRow(p, Date.now())));
    const pinning = canPin();
    const layouts: (Layout | undefined)[] = pinning ? ['shared', 'dedicated'] : [undefined];
    const [postgres, redis] = await Promise.all([startDurablePostgres(), RedisServer.start()]);
    const redisPid = redis.pid;
    if (redisPid === undefined) throw new Error('redis-server exited before the writer benchmark');
    const admin = new pg.Client({ connectionString: postgres.url('postgres') });
    await admin.connect();
    const servers: Servers = { postgres, redis, redisPid, client: new Redis(redis.url), admin, databases: 0 };
    const best = new Map<string, number>();
    const record = (name: string, value: number) => best.set(name, Math.max(best.get(name) ?? 0, value));
    // Per round: the ratio of writer to ceiling measured back to back, and the CPU per row.
    const paired = new Map<string, number[]>();
    const cpuSamples = new Map<string, RowCpu[]>();
    const append = <T>(series: Map<string, T[]>, name: string, value: T) => series.set(name, [...(series.get(name) ?? []), value]);
    const pair = (name: string, ratio: number) => append(paired, name, ratio);
    const sampleCpu = (name: string, cpu: RowCpu) => append(cpuSamples, name, cpu);
    try {
      for (let round = 0; round < rounds; round++) {
        for (const layout of layouts) {
          if (layout !== undefined) applyLayout(servers, layout);
          const tag = layout ?? 'unpinned';
          log(`round ${round + 1}, ${tag}:`);
          const ceilingUrl = await freshDatabase(servers);
          await settle(servers);
          const { rate: ceiling, postgresCpu } = await copyCeiling(ceilingUrl, postgres.pid, 'positions', data, rows);
          log(
            `  raw COPY into positions: ${Math.round(ceiling).toLocaleString('en-US')} rows/s; PostgreSQL CPU per row ${postgresCpu.toFixed(1)} µs`,
          );
          record(`${tag}:ceiling`, ceiling);
          sampleCpu(`${tag}:ceiling`, { writer: 0, redis: 0, postgres: postgresCpu });
          const copy = await writerRun(servers, layout, all, {}, log);
          record(`${tag}:copy`, copy.rate);
          pair(`${tag}:copy`, copy.rate / ceiling);
          sampleCpu(`${tag}:copy`, copy.cpu);
          if (layout !== 'dedicated') {
            const rawUrl = await freshDatabase(servers);
            const raw = new pg.Client({ connectionString: rawUrl });
            await raw.connect();
            await raw.query('CREATE TABLE positions_raw (LIKE positions INCLUDING DEFAULTS)');
            await raw.end();
            await settle(servers);
            record(`${tag}:unindexed`, (await copyCeiling(rawUrl, postgres.pid, 'positions_raw', data, rows)).rate);
            const staging = await writerRun(servers, layout, all, { WRITER_WRITE_PATH: 'staging' }, log);
            record(`${tag}:staging`, staging.rate);
            pair(`${tag}:staging`, staging.rate / ceiling);
          }
        }
      }
    } finally {
      servers.client.disconnect();
      await admin.end();
      await Promise.all([postgres.stop(), redis.destroy()]);
      if (pinning) pin(process.pid, ALL_CPUS);
    }
    const main = layouts[0] ?? 'unpinned';
    const value = (name: string) => best.get(name) ?? 0;
    // Per-round ratios, sorted: "0.68-0.88 (median 0.80)".
    const spread = (name: string) => {
      const ratios = [...(paired.get(name) ?? [])].sort((a, b) => a - b);
      if (ratios.length === 0) return 'none';
      const f = (r: number) => r.toFixed(2);
      return `${f(ratios[0] ?? 0)}-${f(ratios.at(-1) ?? 0)} (median ${f(ratios[Math.floor(ratios.length / 2)] ?? 0)})`;
    };
    // Median CPU per row over the rounds: "writer 4.1 µs, Redis 1.2 µs, PostgreSQL 6.0 µs".
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const cpuOf = (name: string, part: keyof RowCpu) => median((cpuSamples.get(name) ?? []).map((c) => c[part])).toFixed(1);
    const cpuNote = (name: string) =>
      `CPU per row (median of rounds): writer ${cpuOf(name, 'writer')} µs, Redis ${cpuOf(name, 'redis')} µs, PostgreSQL ${cpuOf(name, 'postgres')} µs; raw COPY: PostgreSQL ${cpuOf(name.replace(/:.*/, ':ceiling'), 'postgres')} µs`;
    const setup = `${rows.toLocaleString('en-US')} positions of ${DEVICES} devices over ${SHARDS} shards, default writer settings, PostgreSQL fsync=on synchronous_commit=on, best of ${rounds}`;
    const results: BenchResult[] = [
      {
        suite: 'writer',
        figure: 'positions/s made durable: stream -> PostgreSQL commit (XACK after), writer process',
        unit: 'rows/s',
        value: value(`${main}:copy`),
        baseline: { name: 'raw binary COPY into identical positions', value: value(`${main}:ceiling`) },
        higherIsBetter: true,
        targetRatio: 0.7,
        notes: `${setup}; ${cpus().length} CPUs shared by PostgreSQL, Redis and the writer; raw COPY into an unindexed table: ${Math.round(value(`${main}:unindexed`)).toLocaleString('en-US')} rows/s; ratio of each round: ${spread(`${main}:copy`)}; ${cpuNote(`${main}:copy`)}`,
      },
      {
        suite: 'writer',
        figure: 'same with WRITER_WRITE_PATH=staging (COPY into a temporary table + INSERT ... ON CONFLICT DO NOTHING)',
        unit: 'rows/s',
        value: value(`${main}:staging`),
        baseline: { name: 'raw binary COPY into identical positions', value: value(`${main}:ceiling`) },
        higherIsBetter: true,
        notes: `the path redeliveries always take; new entries go COPY-first; ratio of each round: ${spread(`${main}:staging`)}`,
      },
    ];
    if (pinning) {
      results.push({
        suite: 'writer',
        figure: 'same as the first with the database pinned to CPU 0 and the writer to CPU 1 (one CPU of writer)',
        unit: 'rows/s',
        value: value('dedicated:copy'),
        baseline: { name: 'raw binary COPY into identical positions', value: value('dedicated:ceiling') },
        higherIsBetter: true,
        notes: `capacity of one writer CPU; it shares CPU 1 with this measuring process; ratio of each round: ${spread('dedicated:copy')}; ${cpuNote('dedicated:copy')}`,
      });
    }
    return results;
  },
};
