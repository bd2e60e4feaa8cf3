import { join } from 'node:path';
import pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { login, sharedDirectusSecret, sharedDirectusSeed, sharedDirectusUrl } from '@pitwall/business-plane';
import { LiveClient as ResumingClient, type SocketLike, type WirePosition } from '@pitwall/live-client';
import { startSimulation, type Simulation } from '@pitwall/simulator';
import { REPO_ROOT, sharedRedisUrl, waitFor } from '@pitwall/testkit';
import { startPipeline, type Pipeline } from '../src/index.js';
import { expectAllStoredOnce } from './support/exactly-once.js';
import { LiveClient as RawClient } from './support/live-client.js';

// Viewer continuity on real processes: ingestion, writer and two live gateways over STREAM_SHARDS=2
// (the run's Redis, PostgreSQL and shared Directus), simulated devices driving a race, and a viewer on
// @pitwall/live-client. Gateway 1 is drained (SIGTERM: 1001) mid-race; the viewer moves to gateway 2
// with its cursor and must end up with every position of its event exactly once and in order, as
// PostgreSQL has them.

const RATE = 4;

let pipeline: Pipeline;
let eventId: number;
let eventImeis: string[];
let token: string;
/** A cursor from early in the race (for the "beyond the history" case). */
let earlyCursor: string | undefined;

interface Row {
  device_id: string;
  ms: number;
}

async function rowsOf(imeis: readonly string[]): Promise<Row[]> {
  const client = new pg.Client({ connectionString: pipeline.databaseUrl });
  await client.connect();
  try {
    const res = await client.query<{ device_id: string; ms: string }>(
      `SELECT device_id, (extract(epoch FROM recorded_at) * 1000)::bigint::text AS ms FROM positions
        WHERE device_id = ANY($1::text[]) ORDER BY device_id, recorded_at`,
      [imeis],
    );
    return res.rows.map((r) => ({ device_id: r.device_id, ms: Number(r.ms) }));
  } finally {
    await client.end();
  }
}

/** Per device, the device times in the order they were received. */
function byDevice(positions: readonly { device_id: string; ts: number }[]): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const p of positions) {
    let list = map.get(p.device_id);
    if (list === undefined) map.set(p.device_id, (list = []));
    list.push(p.ts);
  }
  return map;
}

beforeAll(async () => {
  const seed = sharedDirectusSeed();
  pipeline = await startPipeline({
    ports: 'free',
    logDir: join(REPO_ROOT, 'test-results', 'e2e', 'viewer-continuity'),
    redisUrl: sharedRedisUrl(),
    postgresAdminUrl: inject('postgresUrl'),
    directus: { url: sharedDirectusUrl(), secret: sharedDirectusSecret(), seed },
    streamShards: 2,
    gateways: 2,
    env: {
      writer: { WRITER_BLOCK_MS: '200' },
      // A restarted gateway holds only a short tail: a cursor from early in the race is beyond it.
      'live-gateway': { GATEWAY_READ_BLOCK_MS: '200', GATEWAY_WARM_TAIL_ENTRIES: '5' },
    },
  });
  eventId = seed.events[0]?.id ?? 1;
  eventImeis = seed.entries
    .filter((e) => e.event === eventId)
    .map((e) => seed.devices.find((d) => d.id === e.device)?.imei ?? '')
    .sort();
  token = (await login(pipeline.directusUrl, seed.users.viewerOne.email, seed.users.viewerOne.password)).accessToken;
});

afterAll(async () => {
  await pipeline?.stop();
});

function race(devices: number): Simulation {
  return startSimulation({
    port: pipeline.ingestionPort,
    devices,
    rate: RATE,
    ackTimeoutMs: 3_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1_000,
  });
}

describe('viewer continuity (two gateways, STREAM_SHARDS=2)', () => {
  it('a viewer drained from gateway 1 mid-race resumes on gateway 2 with its cursor: every position once, in order, as PostgreSQL has them', async () => {
    const received: WirePosition[] = [];
    const subscribedReplies: { recovered: boolean | undefined; snapshot: number }[] = [];
    const urls: string[] = [];
    const viewer = new ResumingClient({
      url: pipeline.gatewayUrls,
      token: () => token,
      socket: (url) => {
        urls.push(url);
        return new WebSocket(url) as unknown as SocketLike;
      },
      heartbeatMs: 0,
    });
    viewer.on('subscribed', (e) => subscribedReplies.push({ recovered: e.recovered, snapshot: e.snapshot.length }));
    viewer.on('positions', (e) => {
      received.push(...e.positions);
      earlyCursor ??= e.cursor;
    });
    viewer.subscribe(eventId);
    viewer.start();
    await waitFor('subscribed on gateway 1', () => subscribedReplies.length === 1 || undefined);

    // Every seeded device drives (the event's cars among them); devices are numbered like the seed's.
    const sim = race(Math.max(...pipeline.seed.devices.map((d) => Number(d.imei) - 356307040000000)) + 1);
    onTestFailed(() => console.log(JSON.stringify({ stats: sim.stats(), client: viewer.stats(), urls, subscribedReplies })));
    try {
      await waitFor('positions on gateway 1', () => received.length >= eventImeis.length * RATE * 2 || undefined, { timeoutMs: 30_000 });
      const beforeDrain = received.length;
      await pipeline.gateways[0]?.stop();
      await waitFor('resumed on gateway 2', () => subscribedReplies.length === 2 || undefined, { timeoutMs: 30_000 });
      await waitFor('positions on gateway 2', () => received.length >= beforeDrain + eventImeis.length * RATE * 2 || undefined, {
        timeoutMs: 30_000,
      });
      expect(sim.stats().acked).toBeGreaterThan(0);
      expect(await sim.drain(60_000), 'devices still hold records').toBe(true);
      await expectAllStoredOnce(pipeline.databaseUrl, [...sim.ackedRecords()]);
    } finally {
      await sim.stop();
    }

    const rows = await rowsOf(eventImeis);
    await waitFor('every stored position of the event at the viewer', () => received.length >= rows.length || undefined, {
      timeoutMs: 30_000,
    });
    expect(urls.slice(0, 2)).toEqual(pipeline.gatewayUrls);
    expect(subscribedReplies).toEqual([
      { recovered: undefined, snapshot: 0 },
      { recovered: true, snapshot: 0 },
    ]);
    // The gateways sent nothing twice (the client drops repeats; it dropped none).
    expect(viewer.stats()).toMatchObject({ recovered: 1, notRecovered: 0, duplicatesDropped: 0 });
    const got = byDevice(received);
    const stored = byDevice(rows.map((r) => ({ device_id: r.device_id, ts: r.ms })));
    expect([...got.keys()].sort()).toEqual([...stored.keys()].sort());
    for (const [device, times] of stored) expect(got.get(device), device).toEqual(times);
    viewer.close();
  });

  it('a resume beyond what a gateway holds gets recovered:false and the snapshot; history_seconds gives the trail', async () => {
    expect(earlyCursor).toBeDefined();
    // Gateway 1 again: a new pod that read only a short tail of each shard at start.
    await pipeline.gateways[0]?.start();
    const late = await RawClient.connect(pipeline.gatewayUrls[0] ?? '', token);
    const reply = await late.subscribe(eventId, { since: earlyCursor ?? '' });
    expect(reply).toMatchObject({ type: 'subscribed', recovered: false });
    // The snapshot stands in for the gap: the newest stored position of each car the pod knows (its
    // short warm-up tail: cars quiet for longer are not in it, see the gateway README).
    const rows = await rowsOf(eventImeis);
    const newest = new Map<string, number>();
    for (const row of rows) newest.set(row.device_id, Math.max(newest.get(row.device_id) ?? 0, row.ms));
    expect(reply.snapshot?.length).toBeGreaterThan(0);
    for (const position of reply.snapshot ?? []) expect(position.ts, position.device_id).toBe(newest.get(position.device_id));
    expect(late.pushed).toEqual([]);
    late.close();

    const trails = await RawClient.connect(pipeline.gatewayUrls[1] ?? '', token);
    const withHistory = await trails.subscribe(eventId, { history_seconds: 3600 });
    // Gateway 2 read the whole race: the trail is every stored position of the event, each once, in order per car.
    const history = byDevice(withHistory.history ?? []);
    const stored = byDevice(rows.map((r) => ({ device_id: r.device_id, ts: r.ms })));
    for (const [device, times] of stored) expect(history.get(device), device).toEqual(times);
    trails.close();
  });
});
