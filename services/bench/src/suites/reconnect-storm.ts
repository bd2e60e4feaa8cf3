import { createPosition, deviceShardKey, encodePosition, POSITION_FIELD } from '@pitwall/contract';
import { LiveClient, type SocketLike } from '@pitwall/live-client';
import { CLOSE_CODES } from '@pitwall/live-protocol';
import { Histogram } from '@pitwall/load-tests';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DirectusCallCounter, login, seedDirectus, startDirectus, type StartedDirectus } from '@pitwall/business-plane';
import {
  freePort,
  PostgresServer,
  RedisServer,
  REPO_ROOT,
  scrapeMetric,
  startService,
  waitFor,
  type ServiceProcess,
} from '@pitwall/testkit';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';

// Reconnect storm (issue 18): viewers of a gateway pod that is drained (SIGTERM: 1001) all move to the
// other pod at once and resume from their cursors. Two built gateways on a throwaway Redis, a race fed
// straight into the shard streams, a real seeded Directus on a throwaway PostgreSQL behind a counting
// proxy (the gateways verify tokens locally with its SECRET; every viewer uses the logged-in token of
// the viewer of every event, which carries the pitwall_events claim), the viewers on
// @pitwall/live-client in this process. Measured: time from a viewer's new connection to its `recovered: true` reply (p99), against
// the same viewers' first connection to their snapshot (the same storm of fresh subscribes); Directus and
// Redis calls per resume; the history's memory per event per minute of race.

const SUITE = 'reconnect-storm';
const SHARDS = 2;
const EVENTS = 10;
const CARS_PER_EVENT = 20;
const FIX_INTERVAL_MS = 1_000;
/** One car per event per FIX_INTERVAL_MS, every car of `imeis` (every seeded entry), until stopped. */
function startRaceFeed(redis: Redis, streamKey: string, imeis: readonly string[]): { stop: () => Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      const pipeline = redis.pipeline();
      for (const [index, deviceId] of imeis.entries()) {
        const car = index % CARS_PER_EVENT;
        const position = createPosition({
          deviceId,
          recordedAtMs: BigInt(started + car),
          receivedAtMs: BigInt(started + car),
          latE7: Math.round((54.6872 + car / 1e4 + (started % 60_000) / 1e7) * 1e7),
          lonE7: Math.round(25.2797 * 1e7),
          altitudeM: 100,
          speedKmh: 120,
          headingDeg: 90,
          satellites: 9,
        });
        pipeline.xadd(deviceShardKey(streamKey, SHARDS, deviceId), '*', POSITION_FIELD, Buffer.from(encodePosition(position)));
      }
      await pipeline.exec();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, FIX_INTERVAL_MS - (Date.now() - started))));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

async function redisCommands(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let total = 0;
  for (const match of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) total += Number(match[1]);
  return total;
}

interface Viewer {
  client: LiveClient;
  /** When its current socket was created (ms, performance.now()). */
  connectStartedAt: number;
  firstSubscribedMs: number | undefined;
  recoveredMs: number | undefined;
  recovered: boolean | undefined;
}

export const reconnectStormSuite: BenchSuite = {
  name: SUITE,
  async run({ quick, log }: BenchContext): Promise<BenchResult[]> {
    const viewerCount = quick ? 500 : 5_000;
    const redisServer = await RedisServer.start();
    const redis = new Redis(redisServer.url);
    const logDir = join(REPO_ROOT, '.pitwall', 'bench', SUITE);
    mkdirSync(logDir, { recursive: true });
    const postgres = await PostgresServer.start();
    let realDirectus: StartedDirectus | undefined;
    let directus: DirectusCallCounter | undefined;
    const streamKey = 'storm:positions';
    const gateways: ServiceProcess[] = [];
    const viewers: Viewer[] = [];
    let feed: { stop: () => Promise<void> } | undefined;
    try {
      realDirectus = await startDirectus({ postgresAdminUrl: postgres.url(), logFile: join(logDir, 'directus.log') });
      const seed = await seedDirectus(realDirectus, { events: EVENTS, devicesPerEvent: CARS_PER_EVENT });
      directus = await DirectusCallCounter.start(realDirectus.url);
      const eventIds = seed.events.map((event) => event.id);
      const imeis = seed.entries.map((entry) => seed.devices.find((device) => device.id === entry.device)?.imei ?? '');
      // One real token for every viewer: Directus's access tokens live 15 minutes, longer than the run.
      const { viewerAll } = seed.users;
      const token = (await login(realDirectus.url, viewerAll.email, viewerAll.password)).accessToken;
      const urls: string[] = [];
      for (let i = 1; i <= 2; i++) {
        const port = await freePort();
        gateways.push(
          await startService('live-gateway', {
            REDIS_URL: redisServer.url,
            STREAM_KEY: streamKey,
            STREAM_SHARDS: String(SHARDS),
            INSTANCE_ID: `storm-${i}`,
            GATEWAY_PORT: String(port),
            DIRECTUS_URL: directus.url,
            DIRECTUS_SECRET: realDirectus.secret,
            DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
            GATEWAY_BATCH_WINDOW_MS: '1000',
            GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: '1000000',
            GATEWAY_MAX_UNAUTHENTICATED_CONNECTIONS: '20000',
            GATEWAY_DIRECTUS_CONCURRENCY: '64',
            LOG_LEVEL: 'warn',
          }),
        );
        urls.push(`ws://127.0.0.1:${port}/live`);
      }
      feed = startRaceFeed(redis, streamKey, imeis);

      const started = performance.now();
      for (let i = 0; i < viewerCount; i++) {
        const viewer: Viewer = {
          client: undefined as unknown as LiveClient,
          connectStartedAt: 0,
          firstSubscribedMs: undefined,
          recoveredMs: undefined,
          recovered: undefined,
        };
        viewer.client = new LiveClient({
          url: urls,
          token: () => token,
          socket: (url) => {
            viewer.connectStartedAt = performance.now();
            return new WebSocket(url) as unknown as SocketLike;
          },
          heartbeatMs: 0,
        });
        viewer.client.on('subscribed', ({ recovered }) => {
          const tookMs = performance.now() - viewer.connectStartedAt;
          if (viewer.firstSubscribedMs === undefined) viewer.firstSubscribedMs = tookMs;
          else {
            viewer.recoveredMs = tookMs;
            viewer.recovered = recovered;
          }
        });
        viewer.client.subscribe(eventIds[i % eventIds.length] ?? 0);
        viewers.push(viewer);
        viewer.client.start();
      }
      await waitFor('every viewer subscribed on gateway 1', () => viewers.every((v) => v.firstSubscribedMs !== undefined), {
        timeoutMs: 120_000,
        intervalMs: 200,
      });
      log(`${viewerCount} viewers subscribed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      // Live for a while: every viewer holds a cursor; the other pod's history fills.
      await new Promise((resolve) => setTimeout(resolve, quick ? 5_000 : 20_000));
      const [gateway1, gateway2] = gateways;
      if (!gateway1 || !gateway2) throw new Error('two gateways');

      // Redis commands of a quiet period (the feed and the gateways' reads), to subtract from the storm's.
      const quietFrom = await redisCommands(redis);
      const quietStarted = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      const quietRate = ((await redisCommands(redis)) - quietFrom) / (performance.now() - quietStarted);

      const directusBefore = directus.snapshot().total;
      const redisBefore = await redisCommands(redis);
      const stormStarted = performance.now();
      await gateway1.proc.stop('SIGTERM', 30_000);
      await waitFor('every viewer resumed on gateway 2', () => viewers.every((v) => v.recoveredMs !== undefined), {
        timeoutMs: 120_000,
        intervalMs: 200,
      });
      const stormMs = performance.now() - stormStarted;
      const directusCalls = directus.snapshot().total - directusBefore;
      const redisExtra = (await redisCommands(redis)) - redisBefore - quietRate * stormMs;
      const historyBytes = await scrapeMetric(gateway2.metricsUrl, 'pitwall_live_gateway_history_bytes');
      const historySpanMinutes = Math.min(120_000, performance.now() - started) / 60_000;

      const first = new Histogram();
      const resumed = new Histogram();
      for (const viewer of viewers) {
        first.record(viewer.firstSubscribedMs ?? 0);
        resumed.record(viewer.recoveredMs ?? 0);
      }
      const recoveredCount = viewers.filter((v) => v.recovered === true).length;
      log(
        `storm: ${recoveredCount}/${viewerCount} recovered in ${(stormMs / 1000).toFixed(1)} s; new connection to recovered ` +
          `p50 ${resumed.quantile(0.5).toFixed(0)} ms, p99 ${resumed.quantile(0.99).toFixed(0)} ms; first subscribe p99 ` +
          `${first.quantile(0.99).toFixed(0)} ms; Directus calls ${directusCalls}, Redis commands beyond the quiet rate ${redisExtra.toFixed(0)}`,
      );
      const perEventPerMinute = historyBytes / EVENTS / historySpanMinutes;
      const rate = `${EVENTS} events x ${CARS_PER_EVENT} cars at ${1_000 / FIX_INTERVAL_MS} Hz, ${SHARDS} shards`;
      return [
        {
          suite: SUITE,
          figure: `p99 new connection to recovered:true after a ${CLOSE_CODES.goingAway} (${viewerCount} viewers of the drained pod at once)`,
          unit: 'ms',
          value: resumed.quantile(0.99),
          baseline: { name: 'p99 first connection to snapshot, same viewers at once (same run)', value: first.quantile(0.99) },
          higherIsBetter: false,
          notes:
            `${recoveredCount}/${viewerCount} recovered:true; the storm (SIGTERM to the last viewer resumed, including the ` +
            `client's 0-1 s reconnect jitter) took ${(stormMs / 1000).toFixed(1)} s; ${rate}; target p99 <= 1000 ms`,
        },
        {
          suite: SUITE,
          figure: 'Directus calls per resume',
          unit: 'calls',
          value: directusCalls / viewerCount,
          baseline: { name: 'one authorization per viewer', value: 1 },
          higherIsBetter: false,
          notes:
            'tokens carry pitwall_events, so the gateway authorizes every resume from the claim (issue 16); ' +
            "what is left is reads of an event's entries by the pod that takes the storm, at most one per event",
        },
        {
          suite: SUITE,
          figure: 'Redis commands per resume (beyond the quiet rate)',
          unit: 'commands',
          value: Math.max(0, redisExtra) / viewerCount,
          baseline: { name: 'one read of the missed entries per resume', value: 1 },
          higherIsBetter: false,
          notes: 'INFO commandstats around the storm minus the feed and reads of an equally long quiet period',
        },
        {
          suite: SUITE,
          figure: `history memory per event per minute of race (${CARS_PER_EVENT} cars at 1 Hz)`,
          unit: 'bytes',
          value: perEventPerMinute,
          baseline: { name: 'positions as JSON on the wire (same minute)', value: CARS_PER_EVENT * 60 * 150 },
          higherIsBetter: false,
          notes: `pitwall_live_gateway_history_bytes of the pod that took the storm (${(historyBytes / 1024 / 1024).toFixed(1)} MiB over ${historySpanMinutes.toFixed(1)} min)`,
        },
      ];
    } finally {
      for (const viewer of viewers) viewer.client.close();
      await feed?.stop();
      for (const gateway of gateways) await gateway.proc.stop('SIGTERM', 30_000).catch(() => undefined);
      await directus?.stop();
      await realDirectus?.destroy();
      await postgres.destroy();
      redis.disconnect();
      await redisServer.destroy();
    }
  },
};
