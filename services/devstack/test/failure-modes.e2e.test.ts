import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createEventViewer, login, setEventAccess } from '@pitwall/business-plane';
import { shardKey } from '@pitwall/contract';
import { startSimulation, type Simulation } from '@pitwall/simulator';
import { REPO_ROOT, sleep, waitFor } from '@pitwall/testkit';
import { startPipeline, type Pipeline } from '../src/index.js';
import { countRows, expectAllStoredOnce } from './support/exactly-once.js';
import { LiveClient } from './support/live-client.js';

// The failure table of the live-channel architecture, provoked on real processes: ingestion, writer
// and two live gateways over STREAM_SHARDS=4, their own Redis (append-only), PostgreSQL and Directus,
// and simulated Teltonika devices that keep unacknowledged records and resend them. After every
// scenario, each position acknowledged to a device is in `positions` exactly once.

const DEVICES = 8; // 2 events x 4 cars
const RATE = 4; // fixes per second per car

let pipeline: Pipeline;
let event1Imeis: string[];
let viewerOneToken: string;

function race(): Simulation {
  return startSimulation({
    port: pipeline.ingestionPort,
    devices: DEVICES,
    rate: RATE,
    ackTimeoutMs: 3_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1_000,
  });
}

async function ackedAtLeast(sim: Simulation, count: number, timeoutMs = 30_000): Promise<number> {
  return waitFor(
    `${count} acknowledged records`,
    () => {
      const { acked } = sim.stats();
      return acked >= count ? acked : undefined;
    },
    { timeoutMs },
  );
}

/** Stops generating, waits until devices hold nothing unacknowledged, checks every acked record is stored once. */
async function finish(sim: Simulation): Promise<void> {
  try {
    expect(await sim.drain(60_000), `devices still hold records: ${JSON.stringify(sim.stats())}`).toBe(true);
    const check = await expectAllStoredOnce(pipeline.databaseUrl, [...sim.ackedRecords()]);
    expect(check.acked).toBe(sim.stats().acked);
  } finally {
    await sim.stop();
  }
}

/** Row count once it stopped changing (a commit sent just before a crash may still land). */
async function settledRows(): Promise<number> {
  let previous = await countRows(pipeline.databaseUrl);
  for (;;) {
    await sleep(500);
    const now = await countRows(pipeline.databaseUrl);
    if (now === previous) return now;
    previous = now;
  }
}

async function watcher(gateway: number, token: string, eventId: number): Promise<LiveClient> {
  const client = await LiveClient.connect(pipeline.gatewayUrls[gateway] ?? '', token);
  const reply = await client.subscribe(eventId);
  expect(reply.type, JSON.stringify(reply)).toBe('subscribed');
  return client;
}

beforeAll(async () => {
  pipeline = await startPipeline({
    ports: 'free',
    logDir: join(REPO_ROOT, 'test-results', 'e2e', 'failure-modes'),
    streamShards: 4,
    gateways: 2,
    // Directus on the run's PostgreSQL: stopping the writer's server must not take Directus with it.
    directusPostgresAdminUrl: inject('postgresUrl'),
    seedPlan: { events: 2, devicesPerEvent: 4 },
    env: {
      writer: { WRITER_RETRY_INITIAL_MS: '50', WRITER_RETRY_MAX_MS: '500', WRITER_BLOCK_MS: '200' },
      ingestion: { INGESTION_REDIS_TIMEOUT_MS: '2000' },
      'live-gateway': { GATEWAY_DIRECTUS_TIMEOUT_MS: '1000', GATEWAY_READ_BLOCK_MS: '200' },
    },
  });
  const { seed } = pipeline;
  event1Imeis = seed.entries
    .filter((e) => e.event === seed.events[0]?.id)
    .map((e) => seed.devices.find((d) => d.id === e.device)?.imei ?? '')
    .sort();
  viewerOneToken = (await login(pipeline.directusUrl, seed.users.viewerOne.email, seed.users.viewerOne.password)).accessToken;
});

afterAll(async () => {
  await pipeline?.stop();
});

describe('the pipeline under failure (STREAM_SHARDS=4, two gateways)', () => {
  it('shards devices over 4 streams, and viewers on either gateway see every car of their event only', async () => {
    const { seed } = pipeline;
    const viewerAll = await login(pipeline.directusUrl, seed.users.viewerAll.email, seed.users.viewerAll.password);
    const onFirst = await watcher(0, viewerOneToken, 1);
    const onSecond = await watcher(1, viewerOneToken, 1);
    const otherEvent = await watcher(1, viewerAll.accessToken, 2);
    const sim = race();
    try {
      const carsSeen = (client: LiveClient, eventId: number) =>
        waitFor(`every car of event ${eventId}`, () => {
          const seen = new Set(client.positionsSince(0, eventId).map((p) => p.device_id));
          return seen.size === 4 ? [...seen].sort() : undefined;
        });
      expect(await carsSeen(onFirst, 1)).toEqual(event1Imeis);
      expect(await carsSeen(onSecond, 1)).toEqual(event1Imeis);
      const event2 = await carsSeen(otherEvent, 2);
      expect(event2.some((imei) => event1Imeis.includes(imei))).toBe(false);
      expect(onFirst.positionsSince(0).every((p) => event1Imeis.includes(p.device_id))).toBe(true);
      const labels = new Map(seed.entries.map((e) => [seed.devices.find((d) => d.id === e.device)?.imei, e.label]));
      expect(onFirst.positionsSince(0).every((p) => p.label === labels.get(p.device_id))).toBe(true);

      const redis = new Redis(pipeline.redisUrl);
      try {
        const lengths = await Promise.all([0, 1, 2, 3].map((n) => redis.xlen(shardKey(pipeline.streamKey, n))));
        expect(lengths.filter((n) => n > 0).length, `entries per shard ${lengths.join(',')}`).toBeGreaterThan(1);
      } finally {
        redis.disconnect();
      }
      await finish(sim);
    } finally {
      for (const client of [onFirst, onSecond, otherEvent]) client.close();
      await sim.stop();
    }
  });

  it('writer killed: records pile up in Redis, and all are written after it restarts', async () => {
    const sim = race();
    try {
      await ackedAtLeast(sim, 40);
      await pipeline.writer.kill();
      const rowsAtKill = await settledRows();
      const ackedAtKill = sim.stats().acked;
      // Ingestion keeps acknowledging: the records wait in the stream, not on the devices.
      await ackedAtLeast(sim, ackedAtKill + 3 * DEVICES * RATE);
      expect(await countRows(pipeline.databaseUrl)).toBe(rowsAtKill);
      await pipeline.writer.start();
      await finish(sim);
    } finally {
      if (!pipeline.writer.running) await pipeline.writer.start();
      await sim.stop();
    }
  });

  it('Directus stopped: live connections keep receiving, new subscriptions get authorization_unavailable, ingestion and writer unaffected', async () => {
    const directus = pipeline.directus;
    if (!directus) throw new Error('the pipeline should own its Directus');
    // A viewer the gateways have never authorized (nothing cached for it), logged in while Directus is
    // up, and granted event 2 after its login: its token's pitwall_events claim does not list it, so only
    // Directus can authorize it. (A claim-listed event is authorized from the token: no Directus needed.)
    const admin = { url: pipeline.directusUrl, adminToken: pipeline.seed.adminToken };
    const fresh = await createEventViewer(admin, []);
    const newcomerToken = (await login(pipeline.directusUrl, fresh.user.email, fresh.user.password)).accessToken;
    await setEventAccess(admin, fresh.policy, [2]);
    const existing = await watcher(0, viewerOneToken, 1);
    const sim = race();
    let newcomer: LiveClient | undefined;
    try {
      await ackedAtLeast(sim, 40);
      await directus.stop();
      const mark = existing.mark();
      const rowsAtStop = await countRows(pipeline.databaseUrl);
      const ackedAtStop = sim.stats().acked;

      await existing.waitForPositions(mark, 3 * 4 * RATE, 1);
      // A token Directus issued before it went down still authenticates (verified with the secret)...
      newcomer = await LiveClient.connect(pipeline.gatewayUrls[1] ?? '', newcomerToken);
      // ...but nobody can tell whether its user may watch the event.
      const refused = await newcomer.subscribe(2);
      expect(refused).toMatchObject({ type: 'error', code: 'authorization_unavailable' });
      await ackedAtLeast(sim, ackedAtStop + 3 * DEVICES * RATE);
      await waitFor('the writer to keep writing', async () => (await countRows(pipeline.databaseUrl)) > rowsAtStop + 2 * DEVICES * RATE);
      expect(existing.closed).toBeUndefined();

      await directus.restart();
      const accepted = await newcomer.subscribe(2);
      expect(accepted).toMatchObject({ type: 'subscribed', event_id: 2 });
      await finish(sim);
    } finally {
      existing.close();
      newcomer?.close();
      if (!directus.running) await directus.restart();
      await sim.stop();
    }
  });

  it('PostgreSQL stopped: the live channel is unaffected and writes resume after it restarts', async () => {
    const postgres = pipeline.postgres;
    if (!postgres) throw new Error('the pipeline should own its PostgreSQL');
    const live = await watcher(1, viewerOneToken, 1);
    const sim = race();
    try {
      await ackedAtLeast(sim, 40);
      await postgres.stop();
      const mark = live.mark();
      const ackedAtStop = sim.stats().acked;
      await live.waitForPositions(mark, 3 * 4 * RATE, 1);
      await ackedAtLeast(sim, ackedAtStop + 3 * DEVICES * RATE);
      expect(live.closed).toBeUndefined();
      await postgres.restart();
      await finish(sim);
    } finally {
      live.close();
      if (!postgres.running) await postgres.restart();
      await sim.stop();
    }
  });

  it('Redis stopped: the pipeline stops, devices are not acknowledged, and everything resumes after it restarts', async () => {
    const redis = pipeline.redis;
    if (!redis) throw new Error('the pipeline should own its Redis');
    const live = await watcher(0, viewerOneToken, 1);
    const sim = race();
    try {
      await ackedAtLeast(sim, 40);
      await redis.stop();
      // What was already on its way before Redis went down may still land; then nothing moves.
      await sleep(1_000);
      const ackedDuringOutage = sim.stats().acked;
      const rowsDuringOutage = await settledRows();
      const mark = live.mark();
      await sleep(3_000);
      expect(sim.stats().acked).toBe(ackedDuringOutage);
      expect(live.positionsSince(mark)).toEqual([]);
      expect(await countRows(pipeline.databaseUrl)).toBe(rowsDuringOutage);
      expect(sim.stats().pending).toBeGreaterThan(0);

      await redis.restart();
      await ackedAtLeast(sim, ackedDuringOutage + 2 * DEVICES * RATE, 60_000);
      const viewer = live.closed ? await watcher(0, viewerOneToken, 1) : live;
      await viewer.waitForPositions(viewer === live ? mark : 0, 2 * 4 * RATE, 1);
      viewer.close();
      await finish(sim);
    } finally {
      live.close();
      if (!redis.running) await redis.restart();
      await sim.stop();
    }
  });
});
