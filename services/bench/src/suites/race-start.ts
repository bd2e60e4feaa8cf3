import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { callsBetween } from '@pitwall/business-plane';
import {
  LOCAL_RACE_START,
  cpuBetween,
  probeDirectusAuthorization,
  readCpuProfile,
  runScenario,
  sampleCpu,
  startLocalRace,
  summarizeCpuProfile,
  type CpuSample,
  type HarnessSession,
  type LocalRace,
  type RaceStartScenario,
  type RaceShape,
} from '@pitwall/load-tests';
import { RedisServer, REPO_ROOT, scrapeMetric, sleep, waitFor } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { RACE_START_DIR, raceStartReportFile, raceStartRunFile } from './race-start/paths.js';
import { renderRaceStartReport, viewerReport, type MeasuredRun, type RaceStartRun } from './race-start/report.js';
import { writeRunFile } from './race-start/run-file.js';
import { FLOOR_SHARDS, measureFloor, microsecondsPer } from './gateway-floor/floor-run.js';

// End-to-end race start on this machine: the whole stack as real processes (PostgreSQL, Directus,
// Redis with AOF fsync always, ingestion, writer, live gateway), 2,000 simulated Teltonika devices at
// 1 Hz over TCP, and 5,000 viewers connecting within 30 s through the load harness (the shared
// scenario of load-tests), twice on the same stack:
//   A. one Directus account per viewer: each access token carries the events its user may read
//      (pitwall_events, the business plane's Directus extension), so the gateway authorizes every
//      subscription from the token with no Directus call (before issue 16: one call each);
//   B. one account per event (viewers are spread round-robin, so all viewers of an event share it):
//      the same claim path; before issue 16 the gateway's (user, event) permission cache stood in for
//      it. The gateway's own connect and fan-out path is measured.
// Measures time to first snapshot, delivery latency, Directus calls per new subscription, Directus's
// authorization pace, and acknowledged positions missing from PostgreSQL, each beside a baseline from
// the same run; profiles ingestion, writer and gateway over both runs and writes docs/race-start.md.

const SUITE = 'race-start';
/** The gateway's default GATEWAY_BATCH_WINDOW_MS (set explicitly so the report names it). */
const BATCH_WINDOW_MS = 250;
/**
 * Re-validation interval during the runs: shorter than the default (60 s) so that every subscription
 * of the ramp would be due at least once before its run ends if it were re-validated. Claim-authorized
 * subscriptions are not (the token's lifetime bounds them): the runs measure that it stays at zero.
 */
const REVALIDATE_INTERVAL_MS = 20_000;
const DEFAULT_REVALIDATE_INTERVAL_MS = 60_000;
/** Viewers parse one positions frame in this many for latency (all are received and counted). */
const PARSE_EVERY = 5;
/** Devices only, no viewers: warms the stack up and measures what the positions alone cost each part. */
const WARMUP_MS = 15_000;
const AUTHZ_HISTOGRAM = 'pitwall_live_gateway_authorization_duration_seconds';
const FANOUT_HISTOGRAM = 'pitwall_live_gateway_fanout_latency_seconds';

function sizes(quick: boolean): { scenario: RaceStartScenario; race: RaceShape } {
  if (!quick) return LOCAL_RACE_START;
  return {
    scenario: { ...LOCAL_RACE_START.scenario, viewers: 500, rampSeconds: 10, holdSeconds: 10 },
    race: { ...LOCAL_RACE_START.race, devices: 200, events: 4 },
  };
}

async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return scrapeMetric(url, name, labels).catch(() => 0);
}

async function gatewayCounters(metricsUrl: string): Promise<Record<string, number>> {
  const p = 'pitwall_live_gateway_';
  return {
    subscribeOk: await metric(metricsUrl, `${p}subscribe_requests_total`, { result: 'ok' }),
    subscribeRequests: await metric(metricsUrl, `${p}subscribe_requests_total`),
    authorizationCalls: await metric(metricsUrl, `${p}authorization_calls_total`),
    // Re-validations that went to Directus (`claim`: a refreshed token still listing the event, no call).
    revalidations:
      (await metric(metricsUrl, `${p}revalidations_total`)) - (await metric(metricsUrl, `${p}revalidations_total`, { result: 'claim' })),
    claimAllowed: await metric(metricsUrl, `${p}claim_authorizations_total`, { result: 'allowed' }),
    claimFallbacks: await metric(metricsUrl, `${p}claim_authorizations_total`),
    // Entries reads a subscribe waited for (not the periodic re-read of watched events: entries_refresh).
    subscribeEntriesCalls: await metric(metricsUrl, `${p}directus_calls_total`, { call: 'entries' }),
    directusAbandoned: await metric(metricsUrl, `${p}directus_calls_total`, { result: 'abandoned' }),
    permissionCacheHits: await metric(metricsUrl, `${p}cache_hits_total`, { cache: 'permission' }),
    entriesFetches: await metric(metricsUrl, `${p}entries_fetches_total`),
    positionsReceived: await metric(metricsUrl, `${p}positions_received_total`),
    framesPublished: await metric(metricsUrl, `${p}frames_published_total`),
    framesSent: await metric(metricsUrl, `${p}frames_sent_total`),
    bytesSent: await metric(metricsUrl, `${p}bytes_sent_total`),
    conflations: await metric(metricsUrl, `${p}conflations_total`),
    slowClientsClosed: await metric(metricsUrl, `${p}slow_clients_closed_total`),
  };
}

/** Cumulative bucket counts (upper bound in seconds -> count) of a histogram, summed over its labels. */
async function scrapeHistogram(metricsUrl: string, name: string): Promise<Map<number, number>> {
  const body = await (await fetch(`${metricsUrl}/metrics`)).text();
  const buckets = new Map<number, number>();
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const match = /[{,]le="([^"]+)"[^}]*\}\s+(\S+)/.exec(line);
    if (!match?.[1] || !match[2]) continue;
    const le = match[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(match[1]);
    buckets.set(le, (buckets.get(le) ?? 0) + Number(match[2]));
  }
  return buckets;
}

/** The q-quantile (ms) of the observations between two scrapes, interpolated within its bucket. */
function histogramQuantileMs(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = (after.get(le) ?? 0) - (before.get(le) ?? 0);
    if (count >= rank) {
      // Beyond the largest finite bucket: only "more than" is known.
      if (!Number.isFinite(le)) return Number.POSITIVE_INFINITY;
      const inBucket = count - below;
      return (lower + (inBucket > 0 ? ((rank - below) / inBucket) * (le - lower) : 0)) * 1000;
    }
    lower = le;
    below = count;
  }
  return Number.NaN;
}

function diff(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

/** Waits until the gateway has made no Directus call for 3 s; how long that took and how many calls it made meanwhile. */
async function quietDirectus(local: LocalRace, timeoutMs: number): Promise<{ ms: number; calls: number }> {
  const started = Date.now();
  const first = local.directusCalls.snapshot().total;
  let last = first;
  let lastChangeAt = started;
  while (Date.now() - lastChangeAt < 3_000 && Date.now() - started < timeoutMs) {
    await sleep(250);
    const now = local.directusCalls.snapshot().total;
    if (now !== last) {
      last = now;
      lastChangeAt = Date.now();
    }
  }
  return { ms: lastChangeAt - started, calls: last - first };
}

/** One scenario run on the running stack and what the stack's parts did during it. */
async function measure(
  local: LocalRace,
  scenario: RaceStartScenario,
  sessions: HarnessSession[],
  log: (line: string) => void,
): Promise<MeasuredRun> {
  const gateway = local.pipeline.gateways[0];
  if (!gateway) throw new Error('no gateway');
  const parts = local.cpuParts();
  const loadAverage = loadavg()[0] ?? Number.NaN;
  const countersBefore = await gatewayCounters(gateway.metricsUrl);
  const authzBefore = await scrapeHistogram(gateway.metricsUrl, AUTHZ_HISTOGRAM);
  const fanoutBefore = await scrapeHistogram(gateway.metricsUrl, FANOUT_HISTOGRAM);
  const callsBefore = local.directusCalls.snapshot();
  const ackedBefore = local.simulation.stats().acked;
  let cpuStart: CpuSample | undefined;
  let cpuRampEnd: CpuSample | undefined;
  let cpuEnd: CpuSample | undefined;
  let rampTimer: NodeJS.Timeout | undefined;
  const report = await runScenario(scenario, local.target, sessions, {
    workers: 2,
    parseEvery: PARSE_EVERY,
    log,
    onStart: (startAtMs) => {
      rampTimer = setTimeout(
        () => {
          cpuStart = sampleCpu(parts);
          rampTimer = setTimeout(() => (cpuRampEnd = sampleCpu(parts)), scenario.rampSeconds * 1000);
        },
        Math.max(0, startAtMs - Date.now()),
      );
    },
    onEnd: () => (cpuEnd = sampleCpu(parts)),
  });
  clearTimeout(rampTimer);
  const counters = diff(countersBefore, await gatewayCounters(gateway.metricsUrl));
  const authzAfter = await scrapeHistogram(gateway.metricsUrl, AUTHZ_HISTOGRAM);
  const fanoutAfter = await scrapeHistogram(gateway.metricsUrl, FANOUT_HISTOGRAM);
  const calls = callsBetween(callsBefore, local.directusCalls.snapshot());
  const newSubscriptions = counters.subscribeOk || report.stats.all.snapshots;
  // What subscribing cost Directus: authorizations (subscribe and re-validation alike), token checks,
  // and the entries reads a subscribe waited for (the first one of each event on this pod), as the
  // gateway labels them. The periodic re-read of watched events' entries (every
  // GATEWAY_ENTRIES_REFRESH_INTERVAL_MS per event, whatever the number of viewers) is reported apart.
  const subscribeEntries = Math.min(calls.entries, counters.subscribeEntriesCalls ?? 0);
  const subscriptionCalls = calls.authorize + calls.verify + subscribeEntries;
  const runSeconds = (report.endAtMs - report.startAtMs) / 1000;
  log(`viewers done; Directus calls ${JSON.stringify(calls)}; gateway ${JSON.stringify(counters)}`);
  return {
    scenario,
    accounts: new Set(sessions.map((s) => s.accessToken)).size,
    report: viewerReport(report),
    loadAverage,
    counters,
    calls,
    newSubscriptions,
    subscriptionCalls,
    callsPerSubscription: newSubscriptions > 0 ? subscriptionCalls / newSubscriptions : Number.NaN,
    entriesRefreshCalls: calls.entries - subscribeEntries,
    runSeconds,
    revalidationsPerSecond: runSeconds > 0 ? (counters.revalidations ?? 0) / runSeconds : Number.NaN,
    authorizationMs: { p50: histogramQuantileMs(authzBefore, authzAfter, 0.5), p99: histogramQuantileMs(authzBefore, authzAfter, 0.99) },
    gatewayFanoutMs: {
      p50: histogramQuantileMs(fanoutBefore, fanoutAfter, 0.5),
      p99: histogramQuantileMs(fanoutBefore, fanoutAfter, 0.99),
    },
    ackedDuringRun: local.simulation.stats().acked - ackedBefore,
    cpuRamp: cpuStart && cpuRampEnd ? cpuBetween(cpuStart, cpuRampEnd) : [],
    cpuHold: cpuRampEnd && cpuEnd ? cpuBetween(cpuRampEnd, cpuEnd) : [],
  };
}

export const raceStartSuite: BenchSuite = {
  name: SUITE,
  async run({ quick, log }: BenchContext): Promise<BenchResult[]> {
    const { scenario, race } = sizes(quick);
    const workDir = RACE_START_DIR;
    const profileDir = join(workDir, 'profiles');
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
    log(
      `${race.devices} devices at ${race.positionHz} Hz in ${race.events} events; ${scenario.viewers} viewers within ${scenario.rampSeconds} s`,
    );

    // The gateway's stream floor at ten times this race's positions/s, measured apart while nothing else
    // runs (suite gateway-floor's measurement): the 10x projection's cost per position read, without the
    // pod's fixed costs that the devices-only phase below includes at 1x.
    const tenX = race.devices * race.positionHz * 10;
    const floorRedis = await RedisServer.start();
    let streamFloorAtTenX: RaceStartRun['streamFloorAtTenX'];
    try {
      const floor = await measureFloor({
        redisUrl: floorRedis.url,
        shards: FLOOR_SHARDS,
        devices: race.devices * 10,
        positionsPerSecond: tenX,
        settleMs: 3_000,
        measureMs: quick ? 4_000 : 10_000,
      });
      streamFloorAtTenX = {
        positionsPerSecond: floor.gatewayPositions / floor.seconds,
        microsecondsPerPosition: microsecondsPer(floor.gatewayCpuSeconds, floor.gatewayPositions),
        complete: floor.gatewayTotal === floor.produced,
      };
      log(
        `gateway stream floor at ${tenX} positions/s: ${streamFloorAtTenX.microsecondsPerPosition.toFixed(2)} µs per position` +
          (streamFloorAtTenX.complete ? '' : ` (INCOMPLETE: ${floor.gatewayTotal} of ${floor.produced} read; not used)`),
      );
    } finally {
      await floorRedis.destroy();
    }

    const local = await startLocalRace({
      race,
      viewerAccounts: scenario.viewers,
      profile: { dir: profileDir, services: ['ingestion', 'writer', 'live-gateway'] },
      logDir: join(workDir, 'logs'),
      log,
      env: {
        'live-gateway': {
          GATEWAY_BATCH_WINDOW_MS: String(BATCH_WINDOW_MS),
          GATEWAY_REVALIDATE_INTERVAL_MS: String(REVALIDATE_INTERVAL_MS),
          LOG_LEVEL: 'warn',
        },
        ingestion: { LOG_LEVEL: 'warn' },
        writer: { LOG_LEVEL: 'warn' },
      },
    });
    try {
      await waitFor(
        'every device connected and reporting',
        () => {
          const stats = local.simulation.stats();
          return stats.connected === race.devices && stats.acked >= race.devices * 2;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      log(`devices connected; ${WARMUP_MS / 1000} s with devices only`);
      const idleParts = local.cpuParts();
      log(`CPU accounting by process: ${JSON.stringify(idleParts)}`);
      const idleStart = sampleCpu(idleParts);
      const positionsBefore = local.simulation.stats().acked;
      await sleep(WARMUP_MS);
      const cpuDevicesOnly = cpuBetween(idleStart, sampleCpu(idleParts));
      const devicesOnlyPositionsPerSecond = (local.simulation.stats().acked - positionsBefore) / (WARMUP_MS / 1000);

      // Directus's own pace for the gateway's call, straight at it while nothing else asks it anything:
      // the viewers' tokens (each user's first check, as in run A) and the gateway's concurrency
      // (GATEWAY_DIRECTUS_CONCURRENCY default 32).
      const directusCapacity = await probeDirectusAuthorization(
        local.target.directusUrl,
        local.sessions.map((s) => s.accessToken),
        local.eventIds,
        { concurrency: 32, durationMs: quick ? 3_000 : 8_000 },
      );
      log(
        `Directus authorization pace: ${directusCapacity.callsPerSecond.toFixed(0)} calls/s (${JSON.stringify(directusCapacity.statuses)})`,
      );

      local.toggleProfiles();
      log(`A: ${scenario.viewers} viewers, one account each`);
      const distinct = await measure(local, scenario, local.sessions, log);
      // Authorizations the gateway had queued go on after the viewers left: wait until Directus is quiet
      // so that run B starts clean (and say how long that took).
      const backlog = await quietDirectus(local, 300_000);
      log(`the gateway kept calling Directus for ${(backlog.ms / 1000).toFixed(0)} s after run A (${backlog.calls} calls)`);
      // Let run A's cached permissions expire (GATEWAY_PERMISSION_CACHE_TTL_MS default 15 s).
      await sleep(16_000);
      const shared = local.sessions.slice(0, race.events);
      log(`B: ${scenario.viewers} viewers over ${shared.length} accounts`);
      const cached = await measure(local, scenario, shared, log);
      local.toggleProfiles();

      const { drained, check } = await local.drainAndCheckStored(180_000);
      const simulation = local.simulation.stats();
      log(`devices drained: ${String(drained)}; ${check.acked} acknowledged, ${check.missing} missing, ${check.duplicated} duplicated`);

      await waitFor('CPU profiles written', () => readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile')).length >= 3, {
        timeoutMs: 30_000,
      }).catch(() => log('not every CPU profile was written'));
      const profiles = readdirSync(profileDir)
        .filter((f) => f.endsWith('.cpuprofile'))
        .sort()
        .map((file) => ({
          service: file.replace(/-\d+\.cpuprofile$/, ''),
          summary: summarizeCpuProfile(readCpuProfile(join(profileDir, file)), 10),
        }));

      const run: RaceStartRun = {
        machine: { cpuModel: cpus()[0]?.model ?? '?', cores: cpus().length, memoryGiB: totalmem() / 2 ** 30, node: process.version },
        race,
        parseEvery: PARSE_EVERY,
        batchWindowMs: BATCH_WINDOW_MS,
        revalidateIntervalMs: { run: REVALIDATE_INTERVAL_MS, default: DEFAULT_REVALIDATE_INTERVAL_MS },
        setup: local.setup,
        defaultHashLogin: local.defaultHashLogin,
        directusCapacity,
        backlogAfterA: backlog,
        cpuDevicesOnly,
        devicesOnlyPositionsPerSecond,
        streamFloorAtTenX,
        runs: { distinct, cached },
        simulation,
        drained,
        stored: check,
        profiles,
      };
      // The figures first, so that the report can be rendered again from them (render-race-start).
      writeRunFile(raceStartRunFile(), { quick, run });
      const file = raceStartReportFile(quick);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, renderRaceStartReport(run));
      log(`analysis written to ${relative(REPO_ROOT, file)} (figures in ${relative(REPO_ROOT, raceStartRunFile())})`);

      const viewers = scenario.viewers.toLocaleString('en-US');
      const snapshotResult = (m: MeasuredRun, label: string): BenchResult => {
        const all = m.report.stats.all;
        return {
          suite: SUITE,
          figure: `p99 time to first snapshot, ${viewers} viewers within ${scenario.rampSeconds} s, ${label}`,
          unit: 'ms',
          value: all.timeToSnapshot.p99,
          baseline: { name: 'p99 bare WebSocket upgrade (same connections)', value: all.timeToOpen.p99 },
          higherIsBetter: false,
          notes: `p50 ${all.timeToSnapshot.p50.toFixed(0)} ms; ${all.snapshots}/${all.sessions} sessions got a snapshot, ${all.failedSessions} failed`,
        };
      };
      const latency = cached.report.stats.all.deliveryLatency;
      return [
        snapshotResult(distinct, 'one account each (A)'),
        snapshotResult(cached, 'one account per event (B)'),
        {
          suite: SUITE,
          figure: `p99 delivery latency (arrival - rx), ${race.devices.toLocaleString('en-US')} devices at ${race.positionHz} Hz, run B`,
          unit: 'ms',
          value: latency.p99,
          baseline: { name: 'configured batch window', value: BATCH_WINDOW_MS },
          higherIsBetter: false,
          notes:
            `p50 ${latency.p50.toFixed(0)} ms over ${latency.count.toLocaleString('en-US')} positions; gateway rx->publish p99 ` +
            `${cached.gatewayFanoutMs.p99.toFixed(0)} ms; viewer loop delay p99 ${cached.report.stats.eventLoopDelayP99Ms.toFixed(0)} ms`,
        },
        {
          suite: SUITE,
          figure: 'Directus calls per new subscription, one account per viewer (A)',
          unit: 'calls',
          value: distinct.callsPerSubscription,
          baseline: { name: 'one authorization call per subscription (the gateway before the token claim)', value: 1 },
          higherIsBetter: false,
          notes:
            `target <= 0.01: ${distinct.callsPerSubscription <= 0.01 ? 'met' : 'MISSED'}; ${distinct.subscriptionCalls} calls ` +
            `(${distinct.calls.authorize} authorize, ${distinct.calls.verify} verify, ${distinct.subscriptionCalls - distinct.calls.authorize - distinct.calls.verify} entries) ` +
            `for ${distinct.newSubscriptions} subscriptions, plus ${distinct.entriesRefreshCalls} periodic entries re-reads; run B: ${cached.callsPerSubscription.toFixed(3)}`,
        },
        {
          suite: SUITE,
          figure: `re-validation calls/s during run A (re-validation every ${REVALIDATE_INTERVAL_MS / 1000} s)`,
          unit: '/s',
          value: distinct.revalidationsPerSecond,
          baseline: {
            name: `every subscription re-validated at the default ${DEFAULT_REVALIDATE_INTERVAL_MS / 1000} s (before the token claim)`,
            value: scenario.viewers / (DEFAULT_REVALIDATE_INTERVAL_MS / 1000),
          },
          higherIsBetter: false,
          notes:
            `target 0 for claim-authorized subscriptions: ${distinct.counters.revalidations === 0 ? 'met' : 'MISSED'}; ` +
            `${distinct.counters.claimAllowed ?? 0} of ${distinct.counters.subscribeRequests ?? 0} subscribes authorized from the claim; run B ` +
            `${cached.revalidationsPerSecond.toFixed(2)}/s`,
        },
        {
          suite: SUITE,
          figure: 'authorization calls/s the race start asked of Directus (A)',
          unit: '/s',
          value: distinct.calls.authorize / Math.max(1, distinct.runSeconds),
          baseline: { name: 'authorizations/s Directus serves (measured straight, 32 concurrent)', value: directusCapacity.callsPerSecond },
          higherIsBetter: false,
          notes:
            `${(scenario.viewers / scenario.rampSeconds).toFixed(0)} new subscriptions/s in the ramp; Directus p50 ${directusCapacity.p50Ms.toFixed(0)} ms, ` +
            `p99 ${directusCapacity.p99Ms.toFixed(0)} ms at that concurrency`,
        },
        {
          suite: SUITE,
          figure: 'acknowledged positions found in PostgreSQL',
          unit: 'positions',
          value: check.acked - check.missing,
          baseline: { name: 'positions acknowledged to the devices', value: check.acked },
          higherIsBetter: true,
          targetRatio: 1,
          notes: `${check.missing} missing, ${check.duplicated} duplicated`,
        },
      ];
    } finally {
      await local.stop();
    }
  },
};
