import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { login } from '@pitwall/business-plane';
import { liveShardKeys, PROCESSOR_GROUP, shardKeys } from '@pitwall/contract';
import { startSimulation, type Simulation } from '@pitwall/simulator';
import { REPO_ROOT, scrapeMetric, sleep, waitFor } from '@pitwall/testkit';
import { startPipeline, type Pipeline } from '../src/index.js';
import { expectAllStoredOnce } from './support/exactly-once.js';
import { LiveClient, type LivePosition } from './support/live-client.js';

// The seed's failure table, "PostgreSQL down: live channel unaffected", for an outage longer than the
// durable path can buffer: a small STREAM_MAXLEN, the fleet driving well past it. Ingestion admits a
// packet to its shard only while group processor's backlog leaves room (never acknowledging what is
// not durable) and appends what it cannot admit to the shard's live-only stream, which the gateway
// reads too. Real processes: ingestion, writer, a gateway, their own Redis and PostgreSQL, Directus.

const DEVICES = 8; // 2 events x 4 cars
const RATE = 2; // fixes per second per car
const SHARDS = 4;
const CAP = 300; // STREAM_MAXLEN: processor backlog per shard
// A fleet outside the events, so the cap is reached in seconds: 32 devices x 10 fixes per second.
const FILLERS = 32;
const FILLER_RATE = 10;
const OVER_CAP_MS = 60_000;
const SLICE_MS = 10_000;
const DRAIN_TIMEOUT_MS = 300_000;

let pipeline: Pipeline;
let viewerToken: string;
let redis: Redis;

beforeAll(async () => {
  pipeline = await startPipeline({
    ports: 'free',
    logDir: join(REPO_ROOT, 'test-results', 'e2e', 'outage-cap'),
    streamShards: SHARDS,
    gateways: 1,
    directusPostgresAdminUrl: inject('postgresUrl'),
    seedPlan: { events: 2, devicesPerEvent: 4 },
    env: {
      ingestion: { STREAM_MAXLEN: String(CAP), INGESTION_REDIS_TIMEOUT_MS: '2000' },
      writer: {
        WRITER_RETRY_INITIAL_MS: '50',
        WRITER_RETRY_MAX_MS: '500',
        WRITER_BLOCK_MS: '200',
        WRITER_TRIM_INTERVAL_MS: '500',
        WRITER_STREAM_RETENTION_MS: '0',
      },
      'live-gateway': { GATEWAY_READ_BLOCK_MS: '200' },
    },
  });
  const { seed } = pipeline;
  viewerToken = (await login(pipeline.directusUrl, seed.users.viewerOne.email, seed.users.viewerOne.password)).accessToken;
  redis = new Redis(pipeline.redisUrl);
});

afterAll(async () => {
  redis?.disconnect();
  await pipeline?.stop();
});

/** Backlog (lag + pending) of group processor per shard. */
async function backlogs(): Promise<number[]> {
  return Promise.all(
    shardKeys(pipeline.streamKey, SHARDS).map(async (key) => {
      const groups = (await redis.call('XINFO', 'GROUPS', key)) as unknown[][];
      const group = groups.find((g) => g[g.indexOf('name') + 1] === PROCESSOR_GROUP) ?? [];
      const field = (name: string) => Number(group[group.indexOf(name) + 1] ?? 0);
      return field('lag') + field('pending');
    }),
  );
}

/** Each device's positions in arrival order have strictly increasing device times: never twice, never back. */
function expectMonotonic(positions: readonly LivePosition[]): void {
  const last = new Map<string, number>();
  const backwards: string[] = [];
  for (const p of positions) {
    const previous = last.get(p.device_id);
    if (previous !== undefined && p.ts <= previous) backwards.push(`${p.device_id}: ${p.ts} after ${previous}`);
    last.set(p.device_id, p.ts);
  }
  expect(backwards, 'positions shown twice or moving back').toEqual([]);
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

describe('PostgreSQL stopped far beyond what the durable path buffers (STREAM_MAXLEN=300 x 4 shards)', () => {
  it('viewers keep receiving current positions, devices are not acknowledged past the cap; afterwards every acknowledged position is stored once', async () => {
    const postgres = pipeline.postgres;
    if (!postgres) throw new Error('the pipeline should own its PostgreSQL');
    const viewer = await LiveClient.connect(pipeline.gatewayUrls[0] ?? '', viewerToken);
    expect((await viewer.subscribe(1)).type).toBe('subscribed');
    // Devices send their oldest records first; with 255 a packet, a car's resend carries its newest
    // records too while it holds fewer (2 fixes a second: two minutes).
    const sim: Simulation = startSimulation({
      port: pipeline.ingestionPort,
      devices: DEVICES,
      rate: RATE,
      maxRecordsPerPacket: 255,
      ackTimeoutMs: 1_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 500,
    });
    const fillers: Simulation = startSimulation({
      port: pipeline.ingestionPort,
      devices: FILLERS,
      firstIndex: 1_000,
      rate: FILLER_RATE,
      ackTimeoutMs: 1_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 500,
    });
    const acked = () => sim.stats().acked + fillers.stats().acked;
    try {
      await waitFor('records acknowledged', () => sim.stats().acked >= 40);
      await postgres.stop();
      const ackedAtStop = acked();

      // Every shard at its cap: ingestion appends to every live-only stream.
      const liveKeys = liveShardKeys(pipeline.streamKey, SHARDS);
      await waitFor('every shard at its cap', async () => (await Promise.all(liveKeys.map((k) => redis.xlen(k)))).every((n) => n > 0), {
        timeoutMs: 60_000,
      });
      const mark = viewer.mark();
      const startedAt = Date.now();
      await sleep(OVER_CAP_MS);
      const overCap = viewer.pushed.slice(mark).filter((p) => p.eventId === 1);

      // Nothing acknowledged that is not durable: the backlog never passes the cap.
      const backlog = await backlogs();
      expect(Math.max(...backlog), `backlog per shard ${backlog.join(',')}`).toBeLessThanOrEqual(CAP);
      const ackedDuringOutage = acked() - ackedAtStop;
      expect(ackedDuringOutage).toBeLessThanOrEqual(SHARDS * CAP);
      expect(sim.stats().pending + fillers.stats().pending).toBeGreaterThan(SHARDS * CAP);

      // Live throughout: every car of the event in every 10 s of the minute past the cap.
      const cars = new Set(overCap.map((p) => p.position.device_id));
      expect(cars.size).toBe(4);
      for (let from = startedAt; from + SLICE_MS <= startedAt + OVER_CAP_MS; from += SLICE_MS) {
        const slice = new Set(overCap.filter((p) => p.at >= from && p.at < from + SLICE_MS).map((p) => p.position.device_id));
        expect([...slice].sort(), `cars seen ${from - startedAt}..${from - startedAt + SLICE_MS} ms past the cap`).toEqual(
          [...cars].sort(),
        );
      }
      const latencies = overCap.map((p) => p.at - p.position.rx);
      console.log(
        `past the cap: ${overCap.length} positions in ${OVER_CAP_MS / 1000} s, ingestion-to-viewer p50 ${quantile(latencies, 0.5)} ms, ` +
          `p99 ${quantile(latencies, 0.99)} ms; acknowledged during the outage ${ackedDuringOutage}, ` +
          `devices hold ${sim.stats().pending + fillers.stats().pending}`,
      );

      await postgres.restart();
      // What the devices hold (about 20,000 records) goes in at the pace the writer frees the cap; on a
      // machine busy with other suites that pace varies a lot, so the wait is generous and a timeout
      // says where the records stopped: on the devices (refused or unanswered), or in the shards.
      const drained = await Promise.all([sim.drain(DRAIN_TIMEOUT_MS), fillers.drain(DRAIN_TIMEOUT_MS)]);
      if (!drained.every(Boolean)) {
        const admitted = await scrapeMetric(pipeline.ingestion.metricsUrl, 'pitwall_ingestion_admitted_records_total').catch(() => -1);
        const refused = await scrapeMetric(pipeline.ingestion.metricsUrl, 'pitwall_ingestion_refused_records_total').catch(() => -1);
        const written = await scrapeMetric(pipeline.writer.metricsUrl, 'pitwall_writer_entries_acked_total').catch(() => -1);
        throw new Error(
          `devices still hold records after ${DRAIN_TIMEOUT_MS / 1000} s: cars ${JSON.stringify(sim.stats())}, fillers ` +
            `${JSON.stringify(fillers.stats())}; processor backlog per shard ${(await backlogs()).join(',')}; ingestion admitted ` +
            `${admitted}, refused ${refused} records; writer acknowledged ${written} entries`,
        );
      }
      const check = await expectAllStoredOnce(pipeline.databaseUrl, [...sim.ackedRecords(), ...fillers.ackedRecords()]);
      expect(check.acked).toBe(acked());
      // The resends that filled the durable path afterwards were never shown again nor moved a car back.
      expectMonotonic(viewer.positionsSince(0, 1));
      // Everything is acknowledged: the writer trims the shards behind it (WRITER_STREAM_RETENTION_MS=0).
      const shards = shardKeys(pipeline.streamKey, SHARDS);
      await waitFor('the shards trimmed by the writer', async () =>
        (await Promise.all(shards.map((k) => redis.xlen(k)))).every((n) => n === 0),
      );
    } finally {
      viewer.close();
      if (!postgres.running) await postgres.restart();
      await Promise.all([sim.stop(), fillers.stop()]);
    }
  }, 600_000);
});
