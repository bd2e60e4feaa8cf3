import { createPosition, deviceShardKey, encodePosition, POSITION_FIELD } from '@pitwall/contract';
import { CLOSE_CODES } from '@pitwall/live-protocol';
import { summarizeResumes, ViewerFleet, type ResumeFleetReport, type ResumeViewerPlan, type WorkerLoad } from '@pitwall/load-tests';
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
import { cpuSecondsOf } from '../proc-stat.js';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';

// Reconnect storm (issue 18): viewers of a gateway pod that is drained (SIGTERM: 1001) all move to the
// other pod at once and resume from their cursors. Two built gateways on a throwaway Redis, a race fed
// straight into the shard streams, a real seeded Directus on a throwaway PostgreSQL behind a counting
// proxy (the gateways verify tokens locally with its SECRET; every viewer uses the logged-in token of
// the viewer of every event, which carries the pitwall_events claim), the viewers on
// @pitwall/live-client in VIEWER_WORKERS worker processes (ViewerFleet), so that the handshakes and
// frames of thousands of clients arriving within the client's reconnect jitter are not queued on the
// bench's own event loop. Measured: time from a viewer's new connection to its `recovered: true` reply
// (p99), against the same viewers' first connection to their snapshot (the same storm of fresh
// subscribes); Directus and Redis calls per resume; the history's memory per event per minute of race.
// Beside them the workers' own event-loop delay and CPU, and gateway 2's CPU, during the storm: a
// worker whose loop lags makes the figure an upper bound of the gateway's.

const SUITE = 'reconnect-storm';
const SHARDS = 2;
const EVENTS = 10;
const CARS_PER_EVENT = 20;
const FIX_INTERVAL_MS = 1_000;
const VIEWER_WORKERS = 2;
/** A worker event-loop delay p99 above this makes the storm's figure an upper bound (client queueing in it). */
const LOOP_DELAY_NOTICEABLE_MS = 50;
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

/** Poll the fleet until `done` holds of its counts. */
async function fleetReaches(fleet: ViewerFleet, what: string, done: (progress: ResumeFleetReport['progress']) => boolean): Promise<void> {
  let last: ResumeFleetReport['progress'] = { firstSubscribed: 0, resumed: 0 };
  try {
    await waitFor(
      what,
      async () => {
        last = (await fleet.resumeReport()).progress;
        return done(last);
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
  } catch (err) {
    throw new Error(`${String(err)} (${last.firstSubscribed} subscribed, ${last.resumed} resumed)`, { cause: err });
  }
}

/** The workers' load over a window: the worst loop delay, and each worker's CPU between two reports. */
function workerLoadNote(before: readonly WorkerLoad[], after: readonly WorkerLoad[], windowMs: number): { note: string; busy: boolean } {
  const loopP99 = Math.max(0, ...after.map((load) => load.loopDelayP99Ms));
  const loopMax = Math.max(0, ...after.map((load) => load.loopDelayMaxMs));
  const cores = after.map((load, w) => (load.cpuSeconds - (before[w]?.cpuSeconds ?? load.cpuSeconds)) / (windowMs / 1000));
  const note =
    `loop delay p99 ${loopP99.toFixed(0)} ms (max ${loopMax.toFixed(0)} ms), CPU ` +
    cores.map((c) => `${c.toFixed(2)}`).join(' + ') +
    ' cores';
  return { note, busy: loopP99 > LOOP_DELAY_NOTICEABLE_MS || cores.some((c) => c > 0.8) };
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
    let fleet: ViewerFleet | undefined;
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

      fleet = ViewerFleet.start(VIEWER_WORKERS);
      const plans: ResumeViewerPlan[] = Array.from({ length: viewerCount }, (_, id) => ({
        id,
        eventId: eventIds[id % eventIds.length] ?? 0,
      }));
      const loadAtStart = (await fleet.resumeReport()).loads;
      const started = performance.now();
      fleet.runResume({ urls, accessToken: token }, plans);
      await fleetReaches(fleet, 'every viewer subscribed on gateway 1', (p) => p.firstSubscribed >= viewerCount);
      const firstMs = performance.now() - started;
      const firstLoad = workerLoadNote(loadAtStart, (await fleet.resumeReport({ restartLoopDelay: true })).loads, firstMs);
      log(`${viewerCount} viewers subscribed in ${(firstMs / 1000).toFixed(1)} s; workers: ${firstLoad.note}`);
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
      const loadBefore = (await fleet.resumeReport({ restartLoopDelay: true })).loads;
      const gateway2CpuBefore = cpuSecondsOf(gateway2.proc.pid);
      const stormStarted = performance.now();
      await gateway1.proc.stop('SIGTERM', 30_000);
      await fleetReaches(fleet, 'every viewer resumed on gateway 2', (p) => p.resumed >= viewerCount);
      const stormMs = performance.now() - stormStarted;
      const gateway2Cores = (cpuSecondsOf(gateway2.proc.pid) - gateway2CpuBefore) / (stormMs / 1000);
      const afterStorm = await fleet.resumeReport({ withViewers: true });
      const stormLoad = workerLoadNote(loadBefore, afterStorm.loads, stormMs);
      const directusCalls = directus.snapshot().total - directusBefore;
      const redisExtra = (await redisCommands(redis)) - redisBefore - quietRate * stormMs;
      const historyBytes = await scrapeMetric(gateway2.metricsUrl, 'pitwall_live_gateway_history_bytes');
      const historySpanMinutes = Math.min(120_000, performance.now() - started) / 60_000;

      const summary = summarizeResumes(
        plans.map((plan) => plan.id),
        afterStorm.viewers,
      );
      const { firstSnapshot: first, resumed } = summary;
      const recoveredCount = summary.recoveredOnce;
      const errors = Object.entries(afterStorm.errors)
        .map(([code, n]) => `${code} x${n}`)
        .join(', ');
      const oddViewers =
        `${summary.notRecovered} not recovered, ${summary.resumedMoreThanOnce} resumed more than once` +
        (errors ? `; client errors ${errors}` : '');
      log(
        `storm: ${recoveredCount}/${viewerCount} recovered once in ${(stormMs / 1000).toFixed(1)} s (${oddViewers}); new connection to recovered ` +
          `p50 ${resumed.quantile(0.5).toFixed(0)} ms, p99 ${resumed.quantile(0.99).toFixed(0)} ms; first subscribe p99 ` +
          `${first.quantile(0.99).toFixed(0)} ms; Directus calls ${directusCalls}, Redis commands beyond the quiet rate ${redisExtra.toFixed(0)}; ` +
          `gateway 2 CPU ${gateway2Cores.toFixed(2)} cores; workers: ${stormLoad.note}`,
      );
      const clientSide =
        `client side (${VIEWER_WORKERS} worker processes) during the storm: ${stormLoad.note}` +
        (stormLoad.busy ? ': the load generator was busy, so the figure is an upper bound' : '') +
        `; during the first connects: ${firstLoad.note}` +
        (firstLoad.busy ? ' (the baseline is an upper bound)' : '');
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
            `${recoveredCount}/${viewerCount} recovered:true exactly once (${oddViewers}); the storm (SIGTERM to the last ` +
            `viewer resumed, including the spread the drained pod asked for: going_away's reconnect_within_ms, ` +
            `${viewerCount.toLocaleString('en-US')} viewers / GATEWAY_DRAIN_RECONNECTS_PER_SECOND 1,000, at least 1 s) took ` +
            `${(stormMs / 1000).toFixed(1)} s; gateway 2 CPU ` +
            `${gateway2Cores.toFixed(2)} cores over it; ${clientSide}; ${rate}; target p99 <= 1000 ms`,
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
      await fleet?.stop();
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
