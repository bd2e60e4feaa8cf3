import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import {
  LOCAL_RACE_START,
  callsBetween,
  cpuBetween,
  readCpuProfile,
  runScenario,
  sampleCpu,
  startLocalRace,
  summarizeCpuProfile,
  type CpuSample,
  type RaceStartScenario,
  type RaceShape,
} from '@pitwall/load-tests';
import { REPO_ROOT, scrapeMetric, waitFor } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { renderRaceStartReport, type RaceStartRun } from './race-start/report.js';

// End-to-end race start on this machine: the whole stack as real processes (PostgreSQL, Directus,
// Redis with AOF fsync always, ingestion, writer, live gateway), 2,000 simulated Teltonika devices at
// 1 Hz over TCP, and 5,000 viewers with their own Directus accounts connecting within 30 s through
// the load harness (the shared scenario of load-tests). Measures time to first snapshot, delivery
// latency, Directus calls per new subscription and acknowledged positions missing from PostgreSQL,
// each beside a baseline from the same run; profiles ingestion, writer and gateway over the run and
// writes the analysis to docs/race-start.md.

const SUITE = 'race-start';
const BATCH_WINDOW_MS = 100;
/** Viewers parse one positions frame in this many for latency (all are received and counted). */
const PARSE_EVERY = 5;
const WARMUP_MS = 10_000;

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
    revalidations: await metric(metricsUrl, `${p}revalidations_total`),
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
      if (!Number.isFinite(le)) return lower * 1000;
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

export const raceStartSuite: BenchSuite = {
  name: SUITE,
  async run({ quick, log }: BenchContext): Promise<BenchResult[]> {
    const { scenario, race } = sizes(quick);
    const workDir = join(REPO_ROOT, '.pitwall', 'bench', SUITE);
    const profileDir = join(workDir, 'profiles');
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
    log(
      `${race.devices} devices at ${race.positionHz} Hz in ${race.events} events; ${scenario.viewers} viewers (one Directus account each) within ${scenario.rampSeconds} s`,
    );

    const local = await startLocalRace({
      race,
      viewerAccounts: scenario.viewers,
      profile: { dir: profileDir, services: ['ingestion', 'writer', 'live-gateway'] },
      logDir: join(workDir, 'logs'),
      log,
      env: {
        'live-gateway': { GATEWAY_BATCH_WINDOW_MS: String(BATCH_WINDOW_MS), LOG_LEVEL: 'warn' },
        ingestion: { LOG_LEVEL: 'warn' },
        writer: { LOG_LEVEL: 'warn' },
      },
    });
    try {
      const gateway = local.pipeline.gateways[0];
      if (!gateway) throw new Error('no gateway');
      await waitFor(
        'every device connected and reporting',
        () => {
          const stats = local.simulation.stats();
          return stats.connected === race.devices && stats.acked >= race.devices * 2;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      log(`devices connected; warming up ${WARMUP_MS / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));

      const parts = local.cpuParts();
      const loadAverage = loadavg()[0] ?? Number.NaN;
      const countersBefore = await gatewayCounters(gateway.metricsUrl);
      const authzName = 'pitwall_live_gateway_authorization_duration_seconds';
      const authzBefore = await scrapeHistogram(gateway.metricsUrl, authzName);
      const callsBefore = local.directusCalls.snapshot();
      const ackedBefore = local.simulation.stats().acked;
      let cpuStart: CpuSample | undefined;
      let cpuRampEnd: CpuSample | undefined;
      let rampTimer: NodeJS.Timeout | undefined;
      local.toggleProfiles();
      const report = await runScenario(scenario, local.target, local.sessions, {
        workers: 2,
        parseEvery: PARSE_EVERY,
        log,
        onStart: (startAtMs) => {
          const untilStart = Math.max(0, startAtMs - Date.now());
          rampTimer = setTimeout(() => {
            cpuStart = sampleCpu(parts);
            rampTimer = setTimeout(() => (cpuRampEnd = sampleCpu(parts)), scenario.rampSeconds * 1000);
          }, untilStart);
        },
      });
      clearTimeout(rampTimer);
      const cpuEnd = sampleCpu(parts);
      local.toggleProfiles();
      const counters = diff(countersBefore, await gatewayCounters(gateway.metricsUrl));
      const authzAfter = await scrapeHistogram(gateway.metricsUrl, authzName);
      const authorizationMs = {
        p50: histogramQuantileMs(authzBefore, authzAfter, 0.5),
        p99: histogramQuantileMs(authzBefore, authzAfter, 0.99),
      };
      const calls = callsBetween(callsBefore, local.directusCalls.snapshot());
      const ackedDuringRun = local.simulation.stats().acked - ackedBefore;
      log(`viewers done; ${JSON.stringify(calls)} Directus calls; gateway ${JSON.stringify(counters)}`);

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

      const stats = report.stats;
      const all = stats.all;
      const newSubscriptions = counters.subscribeOk || all.snapshots;
      // Re-validation calls are periodic, not caused by new subscriptions.
      const subscriptionCalls = Math.max(0, calls.total - (counters.revalidations ?? 0));
      const callsPerSubscription = newSubscriptions > 0 ? subscriptionCalls / newSubscriptions : Number.NaN;

      const run: RaceStartRun = {
        scenario,
        race,
        parseEvery: PARSE_EVERY,
        batchWindowMs: BATCH_WINDOW_MS,
        report,
        setup: local.setup,
        loadAverage,
        defaultHashLogin: local.defaultHashLogin,
        authorizationMs,
        counters,
        calls,
        newSubscriptions,
        callsPerSubscription,
        ackedDuringRun,
        simulation,
        drained,
        stored: check,
        cpuRamp: cpuStart && cpuRampEnd ? cpuBetween(cpuStart, cpuRampEnd) : [],
        cpuHold: cpuRampEnd ? cpuBetween(cpuRampEnd, cpuEnd) : [],
        profiles,
      };
      // A quick look goes next to the logs; a full run is the analysis in docs/.
      const file = quick ? join(workDir, 'race-start.md') : join(REPO_ROOT, 'docs', 'race-start.md');
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, renderRaceStartReport(run));
      log(`analysis written to ${relative(REPO_ROOT, file)}`);

      const open = all.timeToOpen.summary();
      const snapshot = all.timeToSnapshot.summary();
      const latency = all.deliveryLatency.summary();
      return [
        {
          suite: SUITE,
          figure: `p99 time to first snapshot, ${scenario.viewers.toLocaleString('en-US')} viewers within ${scenario.rampSeconds} s`,
          unit: 'ms',
          value: snapshot.p99,
          baseline: { name: 'p99 bare WebSocket upgrade (same connections)', value: open.p99 },
          higherIsBetter: false,
          notes: `p50 ${snapshot.p50.toFixed(0)} ms; ${all.snapshots}/${all.sessions} sessions got a snapshot, ${all.failedSessions} failed`,
        },
        {
          suite: SUITE,
          figure: `p99 delivery latency (now - rx), ${race.devices.toLocaleString('en-US')} devices at ${race.positionHz} Hz`,
          unit: 'ms',
          value: latency.p99,
          baseline: { name: 'configured batch window', value: BATCH_WINDOW_MS },
          higherIsBetter: false,
          notes: `p50 ${latency.p50.toFixed(0)} ms over ${latency.count.toLocaleString('en-US')} positions (1 frame in ${PARSE_EVERY} parsed)`,
        },
        {
          suite: SUITE,
          figure: 'Directus calls per new subscription',
          unit: 'calls',
          value: callsPerSubscription,
          baseline: { name: 'naive design: one authorization call per subscription', value: 1 },
          higherIsBetter: false,
          notes: `${subscriptionCalls} calls (${calls.authorize} authorize, ${calls.verify} verify, ${calls.entries} entries) for ${newSubscriptions} subscriptions`,
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
