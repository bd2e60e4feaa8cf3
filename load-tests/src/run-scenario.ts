import { connectAtSeconds, eventForViewer, scenarioDurationSeconds, stormAtSeconds, type Scenario, type ViewerSlo } from './scenarios.js';
import type { PhaseStats, ViewerStats } from './stats/viewer-stats.js';
import type { FleetOptions, ViewerPlan } from './viewers/plan.js';
import { ViewerFleet } from './viewers/viewer-fleet.js';

// Runs one of the shared scenarios (scenarios.ts) from Node against a running stack: the same
// schedule the k6 scripts give their VUs, the same metrics, and the same thresholds as a verdict.

export interface HarnessTarget {
  /** ws:// URL of the gateway's /live. */
  gatewayUrl: string;
  /** Directus base URL (token refreshes). */
  directusUrl: string;
  eventIds: readonly number[];
}

/** A viewer's Directus tokens; viewers take them round-robin. */
export interface HarnessSession {
  accessToken: string;
  refreshToken?: string;
}

export interface HarnessOptions {
  /** Viewer worker processes (default: one per core). */
  workers?: number;
  /** Parse one positions frame in this many per viewer for delivery latency (default 1: every frame). */
  parseEvery?: number;
  /** Progress lines every `progressEveryMs` (default 5 s). */
  log?: (line: string) => void;
  progressEveryMs?: number;
  /** Called once every viewer is scheduled, with the absolute start time (ms): for work alongside the run. */
  onStart?: (startAtMs: number) => void;
  /** Called when every viewer has finished, while the worker processes still run (e.g. to sample their CPU). */
  onEnd?: () => void;
}

export interface Verdict {
  name: string;
  value: number;
  limit: number;
  ok: boolean;
}

export interface ScenarioReport {
  scenario: Scenario;
  startAtMs: number;
  endAtMs: number;
  stats: ViewerStats;
  verdicts: Verdict[];
  passed: boolean;
}

/** Each viewer's schedule for the scenario, starting at `startAtMs`. */
export function planViewers(
  scenario: Scenario,
  target: HarnessTarget,
  sessions: readonly HarnessSession[],
  startAtMs: number,
): ViewerPlan[] {
  if (sessions.length === 0) throw new Error('no viewer sessions (Directus tokens) to run with');
  const untilMs = startAtMs + scenarioDurationSeconds(scenario) * 1000;
  return Array.from({ length: scenario.viewers }, (_, i): ViewerPlan => {
    const session = sessions[i % sessions.length] ?? sessions[0];
    const plan: ViewerPlan = {
      accessToken: session?.accessToken ?? '',
      refreshToken: session?.refreshToken,
      eventId: eventForViewer(i, target.eventIds),
      connectAtMs: startAtMs + connectAtSeconds(i, scenario.viewers, scenario.rampSeconds) * 1000,
      untilMs,
    };
    if (scenario.kind === 'reconnect-storm') {
      plan.dropAtMs = startAtMs + stormAtSeconds(scenario) * 1000;
      plan.returnAtMs = plan.dropAtMs + Math.random() * scenario.reconnectWindowSeconds * 1000;
    }
    return plan;
  });
}

function sloVerdicts(slo: ViewerSlo, phase: PhaseStats, label: string): Verdict[] {
  const failureRate = phase.sessions === 0 ? 1 : phase.failedSessions / phase.sessions;
  const p99Snapshot = phase.timeToSnapshot.quantile(0.99);
  const p99Latency = phase.deliveryLatency.quantile(0.99);
  return [
    {
      name: `${label}p99 time to snapshot (ms)`,
      value: p99Snapshot,
      limit: slo.timeToSnapshotP99Ms,
      ok: p99Snapshot < slo.timeToSnapshotP99Ms,
    },
    {
      name: `${label}p99 delivery latency (ms)`,
      value: p99Latency,
      limit: slo.deliveryLatencyP99Ms,
      ok: p99Latency < slo.deliveryLatencyP99Ms,
    },
    {
      name: `${label}failed sessions (rate)`,
      value: failureRate,
      limit: slo.maxSessionFailureRate,
      ok: failureRate <= slo.maxSessionFailureRate,
    },
  ];
}

/** The scenario's thresholds (the same as k6Thresholds) applied to what the viewers measured. */
export function evaluate(scenario: Scenario, stats: ViewerStats): Verdict[] {
  const verdicts = sloVerdicts(scenario.slo, stats.all, '');
  if (scenario.kind === 'reconnect-storm') verdicts.push(...sloVerdicts(scenario.reconnectSlo, stats.phases.reconnect, 'reconnect: '));
  if (scenario.kind === 'token-refresh-soak') {
    const refreshes = stats.refreshesOk + stats.refreshesFailed;
    verdicts.push(
      {
        name: 'closes with 4401',
        value: stats.unauthenticatedCloses,
        limit: scenario.maxUnauthenticatedCloses,
        ok: stats.unauthenticatedCloses <= scenario.maxUnauthenticatedCloses,
      },
      {
        name: 'failed token refreshes (rate)',
        value: refreshes === 0 ? 0 : stats.refreshesFailed / refreshes,
        limit: 0,
        ok: stats.refreshesFailed === 0,
      },
    );
  }
  return verdicts;
}

function progressLine(stats: ViewerStats, finished: number, viewers: number): string {
  const all = stats.all;
  return (
    `viewers: ${stats.openSockets} open, ${all.snapshots}/${all.sessions} sessions with snapshot, ${all.failedSessions} failed, ` +
    `${finished}/${viewers} done; ${stats.positionFrames} positions frames; worker loop delay p99 ${stats.eventLoopDelayP99Ms.toFixed(0)} ms`
  );
}

/** Runs the scenario with `sessions` against `target` and returns what was measured and the verdict. */
export async function runScenario(
  scenario: Scenario,
  target: HarnessTarget,
  sessions: readonly HarnessSession[],
  options: HarnessOptions = {},
): Promise<ScenarioReport> {
  const fleet = ViewerFleet.start(options.workers);
  const log = options.log ?? (() => undefined);
  try {
    // A moment for the workers to boot, so that the ramp starts on time.
    const startAtMs = Date.now() + 1_000;
    const fleetOptions: FleetOptions = {
      gatewayUrl: target.gatewayUrl,
      snapshotTimeoutMs: scenario.snapshotTimeoutSeconds * 1000,
      parseEvery: Math.max(1, Math.floor(options.parseEvery ?? 1)),
      refresh:
        scenario.kind === 'token-refresh-soak' ? { directusUrl: target.directusUrl, leadSeconds: scenario.refreshLeadSeconds } : undefined,
    };
    const plans = planViewers(scenario, target, sessions, startAtMs);
    const done = fleet.run(fleetOptions, plans);
    options.onStart?.(startAtMs);
    const progress = setInterval(() => {
      void fleet.report().then(({ stats, finishedViewers }) => log(progressLine(stats, finishedViewers, plans.length)));
    }, options.progressEveryMs ?? 5_000);
    try {
      await done;
    } finally {
      clearInterval(progress);
    }
    options.onEnd?.();
    const endAtMs = Date.now();
    const { stats } = await fleet.report();
    const verdicts = evaluate(scenario, stats);
    return { scenario, startAtMs, endAtMs, stats, verdicts, passed: verdicts.every((v) => v.ok) };
  } finally {
    await fleet.stop();
  }
}
