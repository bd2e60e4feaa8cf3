import type { DirectusCalls } from '@pitwall/business-plane';
import type {
  AuthorizationCapacity,
  CpuUse,
  LoginCost,
  ProfileSummary,
  RaceShape,
  RaceStartScenario,
  ScenarioReport,
  StoredCheck,
  Summary,
  Verdict,
  ViewerStatsData,
} from '@pitwall/load-tests';
import type { SimulationStats } from '@pitwall/simulator';
import {
  PER_POSITION_COMPONENTS,
  VALUES_PROD,
  framesPerViewerPerSecond,
  projectLoad,
  valuesProdPods,
  type Component,
  type ComponentProjection,
  type PerPositionComponent,
  type Projection,
  type ProjectionRow,
  type RaceMeasurements,
  type TargetLoad,
} from './projection.js';

// docs/race-start.md: what the end-to-end race start measured, where the CPU went, and what would
// saturate first at ten times the load. Generated from one run by `make bench`, or again from the run's
// saved figures (run.json, render-race-start): everything here renders from plain data.

/** One phase of the viewers (or both together), its histograms reduced to their quantiles. */
export interface PhaseFigures {
  sessions: number;
  snapshots: number;
  failedSessions: number;
  timeToOpen: Summary;
  timeToSnapshot: Summary;
  deliveryLatency: Summary;
}

/** What the viewers measured, as plain data: both phases together, and how many sessions were returns. */
export type ViewerFigures = Omit<ViewerStatsData, 'phases'> & { all: PhaseFigures; reconnectSessions: number };

/** A scenario report as plain data. */
export interface ViewerReport {
  startAtMs: number;
  endAtMs: number;
  verdicts: Verdict[];
  stats: ViewerFigures;
}

export function viewerReport(report: ScenarioReport): ViewerReport {
  const { stats } = report;
  const all = stats.all;
  const { phases, ...counts } = stats.toData();
  return {
    startAtMs: report.startAtMs,
    endAtMs: report.endAtMs,
    verdicts: report.verdicts,
    stats: {
      ...counts,
      reconnectSessions: phases.reconnect.sessions,
      all: {
        sessions: all.sessions,
        snapshots: all.snapshots,
        failedSessions: all.failedSessions,
        timeToOpen: all.timeToOpen.summary(),
        timeToSnapshot: all.timeToSnapshot.summary(),
        deliveryLatency: all.deliveryLatency.summary(),
      },
    },
  };
}

/** The machine the run was on (the report may be rendered again elsewhere). */
export interface MachineFacts {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
}

/** One scenario run on the stack and what its parts did meanwhile. */
export interface MeasuredRun {
  scenario: RaceStartScenario;
  /** Distinct Directus accounts the viewers used. */
  accounts: number;
  report: ViewerReport;
  /** 1-minute load average of the machine when the viewers started (other jobs included). */
  loadAverage: number;
  /** Deltas of the gateway's counters over the run. */
  counters: Record<string, number>;
  /** Calls from the gateway to Directus, counted at the wire. */
  calls: DirectusCalls;
  newSubscriptions: number;
  /** Directus calls subscribing made: authorizations, token checks, entries reads a subscribe waited for. */
  subscriptionCalls: number;
  callsPerSubscription: number;
  /** Entries re-reads of watched events (periodic, whatever the number of viewers). */
  entriesRefreshCalls: number;
  /** The scenario's length (first connect to last viewer done), s. */
  runSeconds: number;
  /** The gateway's re-validations per second over the run. */
  revalidationsPerSecond: number;
  /** The gateway's authorization calls (its histogram; queueing behind its concurrency limit included), ms. */
  authorizationMs: { p50: number; p99: number };
  /** The gateway's rx -> publish latency (its histogram), ms: delivery without the viewers' side. */
  gatewayFanoutMs: { p50: number; p99: number };
  ackedDuringRun: number;
  cpuRamp: CpuUse[];
  cpuHold: CpuUse[];
}

export interface RaceStartRun {
  machine: MachineFacts;
  race: RaceShape;
  parseEvery: number;
  batchWindowMs: number;
  /** Re-validation interval of the gateway during the runs, and its default. */
  revalidateIntervalMs: { run: number; default: number };
  setup: Record<string, number>;
  defaultHashLogin: LoginCost | undefined;
  /** Directus's pace for the gateway's call, measured straight at it before the runs. */
  directusCapacity: AuthorizationCapacity;
  /** How long the gateway went on calling Directus after run A's viewers had left, and how many calls. */
  backlogAfterA: { ms: number; calls: number };
  /** CPU of each part with the devices reporting and no viewer, and the positions/s acknowledged meanwhile. */
  cpuDevicesOnly: CpuUse[];
  devicesOnlyPositionsPerSecond: number;
  /**
   * The gateway's stream floor measured apart at ten times the race's positions/s (suite gateway-floor's
   * measurement, before the stack starts): its CPU per position at that rate, without the pod's fixed
   * costs that the devices-only figure above includes. Undefined in runs saved before it was measured.
   */
  streamFloorAtTenX?: { positionsPerSecond: number; microsecondsPerPosition: number; complete: boolean };
  runs: { distinct: MeasuredRun; cached: MeasuredRun };
  simulation: SimulationStats;
  drained: boolean;
  stored: StoredCheck;
  profiles: { service: string; summary: ProfileSummary }[];
}

/** How each component takes more load: every one of them but PostgreSQL is one thread per process. */
const HOW_IT_GROWS: Record<Component, string> = {
  directus: 'one core per process: more replicas behind its load balancer',
  'live-gateway': 'one core per pod: more pods for fan-out, but each reads the whole stream',
  ingestion: 'one core per pod: more pods (devices spread over them)',
  writer: 'one core per process: more writers splitting the `processor` group',
  redis: 'one thread: shard the stream (Redis Cluster), a master per shard or two',
  postgres: 'several processes: a bigger machine',
};

/** Parts of the CPU accounting (process names) of each component. */
const PART_OF: Record<Component, string> = {
  ingestion: 'ingestion',
  writer: 'writer',
  redis: 'redis',
  postgres: 'postgres',
  'live-gateway': 'live-gateway-1',
  directus: 'directus',
};

/** Directus's default access-token lifetime (ACCESS_TOKEN_TTL 15 min): each viewer refreshes once per this. */
const ACCESS_TOKEN_TTL_SECONDS = 900;
/**
 * Assumed, not measured: one arriving viewer in ten has no session (a first visit, or a refresh token
 * that expired) and logs in; the live map keeps its refresh token across visits so the rest do not.
 */
const LOGIN_SHARE = 0.1;
/** The projection's scale. */
const SCALE = 10;

function n(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ms(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return 'over 10 s'; // the gateway histograms' largest bucket
  return Number.isFinite(value) ? `${n(value, value < 10 ? 1 : 0)} ms` : '–';
}

function table(header: string[], rows: string[][]): string {
  return [header, header.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

function percentileRow(name: string, s: Summary): string[] {
  return [name, n(s.count), ms(s.p50), ms(s.p90), ms(s.p95), ms(s.p99), ms(s.max)];
}

function cpuOf(uses: CpuUse[], part: string): number {
  return uses.find((u) => u.part === part)?.cores ?? 0;
}

function counts(record: Record<string, number>): string {
  const entries = Object.entries(record).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k}: ${n(v)}`).join(', ');
}

function failureRate(m: MeasuredRun): number {
  const all = m.report.stats.all;
  return all.sessions === 0 ? Number.NaN : all.failedSessions / all.sessions;
}

function runFacts(label: string, m: MeasuredRun): string[] {
  const stats = m.report.stats;
  const all = stats.all;
  const c = m.counters;
  return [
    `**Run ${label}** (${n(m.accounts)} accounts; load average ${n(m.loadAverage, 2)} when it started)`,
    '',
    `- sessions: ${n(all.sessions)} (${n(stats.reconnectSessions)} of them returns after a failure), ${n(all.snapshots)} with a snapshot, ` +
      `${n(all.failedSessions)} failed (${counts(stats.failures)}); server closes: ${counts(stats.serverCloses)}; error frames: ${counts(stats.errors)}; ` +
      `${n(stats.retries)} requests sent again after a retryable error`,
    `- received: ${n(stats.positionFrames)} positions frames, ${n(stats.bytesReceived / 2 ** 20, 1)} MiB; viewer worker event loop delay ` +
      `p99 ${ms(stats.eventLoopDelayP99Ms)} (max ${ms(stats.eventLoopDelayMaxMs)}): how late the clients themselves read`,
    `- gateway: ${n(c.subscribeOk ?? 0)} subscriptions accepted of ${n(c.subscribeRequests ?? 0)} requests; ${n(c.authorizationCalls ?? 0)} ` +
      `authorization calls (p50 ${ms(m.authorizationMs.p50)}, p99 ${ms(m.authorizationMs.p99)}, queueing included), ${n(c.permissionCacheHits ?? 0)} ` +
      `permission cache hits, ${n(c.revalidations ?? 0)} re-validations, ${n(c.entriesFetches ?? 0)} entries reads; ${n(c.positionsReceived ?? 0)} ` +
      `positions read from the stream, ${n(c.framesPublished ?? 0)} frames published, ${n(c.framesSent ?? 0)} sent ` +
      `(${n((c.bytesSent ?? 0) / 2 ** 20, 1)} MiB); rx -> publish p50 ${ms(m.gatewayFanoutMs.p50)}, p99 ${ms(m.gatewayFanoutMs.p99)}; ` +
      `${n(c.conflations ?? 0)} conflations, ${n(c.slowClientsClosed ?? 0)} slow clients closed`,
    `- authorization: ${n(c.claimAllowed ?? 0)} subscribes authorized from the token's \`pitwall_events\` claim, ` +
      `${n((c.claimFallbacks ?? 0) - (c.claimAllowed ?? 0))} left to Directus (not listed, partial or no claim); ` +
      `${n(c.revalidations ?? 0)} re-validations (${n(m.revalidationsPerSecond, 2)}/s); ${n(c.directusAbandoned ?? 0)} queued Directus calls dropped ` +
      `because their connections had closed`,
    `- Directus, counted at the wire: ${n(m.calls.total)} calls (${n(m.calls.authorize)} authorize, ${n(m.calls.verify)} /users/me, ` +
      `${n(m.calls.entries)} entries, ${n(m.calls.other)} other) for ${n(m.newSubscriptions)} new subscriptions: ${n(m.subscriptionCalls)} ` +
      `of them made by subscribing (${n(m.callsPerSubscription, 3)} per subscription), ${n(m.entriesRefreshCalls)} the periodic re-read of ` +
      `watched events' entries`,
    '',
  ];
}

/** Cores of a part in a phase; undefined when the phase or the part was not measured. */
function measuredCores(uses: CpuUse[], part: string): number | undefined {
  return uses.find((u) => u.part === part)?.cores;
}

/** What the run measured, for the projection: devices-only CPU, run B's gateway, the login's cost. */
export function raceMeasurements(run: RaceStartRun): RaceMeasurements {
  const { cached } = run.runs;
  const rampSeconds = cached.scenario.rampSeconds;
  const viewers = cached.newSubscriptions;
  return {
    positionsPerSecond: run.devicesOnlyPositionsPerSecond,
    gatewayFloorCpuSecondsPerPosition:
      run.streamFloorAtTenX?.complete === true ? run.streamFloorAtTenX.microsecondsPerPosition / 1e6 : undefined,
    devicesOnlyCores: Object.fromEntries(
      [...PER_POSITION_COMPONENTS, 'live-gateway' as const].map((c) => [c, measuredCores(run.cpuDevicesOnly, PART_OF[c])]),
    ),
    gateway: {
      holdCores: measuredCores(cached.cpuHold, PART_OF['live-gateway']),
      rampCores: measuredCores(cached.cpuRamp, PART_OF['live-gateway']),
      viewers,
      framesPerViewerPerSecond: framesPerViewerPerSecond({
        framesSent: cached.counters.framesSent ?? Number.NaN,
        viewers,
        runSeconds: cached.runSeconds,
        rampSeconds,
      }),
      subscriptionsPerSecond: rampSeconds > 0 ? viewers / rampSeconds : Number.NaN,
    },
    // A refresh's cost is not measured here (suite directus-login measures the claim's share of it).
    directus: { loginCpuMs: run.defaultHashLogin?.cpuMs, refreshCpuMs: undefined },
  };
}

/** Ten times the run: ten times the devices and the viewers over ten times the events, each viewer's frames as measured. */
export function tenfoldTarget(run: RaceStartRun, measured: RaceMeasurements): TargetLoad {
  const scenario = run.runs.cached.scenario;
  return {
    positionsPerSecond: run.race.devices * run.race.positionHz * SCALE,
    viewers: scenario.viewers * SCALE,
    framesPerViewerPerSecond: measured.gateway.framesPerViewerPerSecond,
    rampSeconds: scenario.rampSeconds,
    loginShare: LOGIN_SHARE,
    accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS,
  };
}

export function tenfoldProjection(run: RaceStartRun): Projection {
  const measured = raceMeasurements(run);
  return projectLoad(measured, tenfoldTarget(run, measured));
}

/** A CPU cost per unit in the unit that reads best. */
function cpuPerUnit(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'not measured';
  return seconds >= 1e-3 ? `${n(seconds * 1e3, seconds < 1e-2 ? 1 : 0)} ms` : `${n(seconds * 1e6, seconds < 1e-5 ? 1 : 0)} µs`;
}

function cores(value: number, incomplete = false): string {
  if (value === Number.POSITIVE_INFINITY) return 'no pod count fits';
  if (!Number.isFinite(value)) return 'not measured';
  return `${incomplete ? '≥ ' : ''}${n(value, value < 10 ? 2 : 1)}`;
}

function pods(c: ComponentProjection): string {
  if (c.floorExceedsBudget) return '**none fits** (stream floor over the budget)';
  if (c.scaling === 'machine') return 'one machine';
  if (!Number.isFinite(c.pods)) return 'not measured';
  const masters = c.pods === 1 ? ' master' : ' masters';
  return `${c.incomplete ? '≥ ' : ''}${n(c.pods)}${c.scaling === 'masters' ? masters : ''}`;
}

function valuesProdCell(c: ComponentProjection, target: TargetLoad): string {
  const prod = valuesProdPods(c.component, target);
  if (prod === undefined) return c.component === 'directus' ? 'not in this chart (business plane)' : 'outside the chart';
  if (c.component === 'live-gateway') {
    const { minReplicas, maxReplicas, targetConnectionsPerPod } = VALUES_PROD.liveGateway;
    return `${prod.max} at ${n(target.viewers)} connections (HPA ${minReplicas}-${maxReplicas} on ${n(targetConnectionsPerPod)} connections/pod)`;
  }
  return prod.min === prod.max ? String(prod.min) : `${prod.min}-${prod.max} (KEDA on the \`processor\` lag)`;
}

/** How values-prod's pods compare with what the projection asks, component by component. */
function valuesProdVerdict(projection: Projection): string {
  const { target } = projection;
  const lines: string[] = [];
  for (const c of projection.components) {
    const prod = valuesProdPods(c.component, target);
    if (prod === undefined) continue;
    if (c.floorExceedsBudget) {
      lines.push(
        `the live gateway is short at any size: each pod's stream floor exceeds ${n(projection.podBudgetCores, 1)} core, so the ` +
          `${prod.max} pods its HPA runs at ${n(target.viewers)} connections (or ${VALUES_PROD.liveGateway.maxReplicas}, its most) all ` +
          `saturate; the floor has to come down first (each pod reading only the shards its viewers watch)`,
      );
    } else if (!Number.isFinite(c.pods)) {
      lines.push(`${c.component}: not measured`);
    } else if (c.pods > prod.max) {
      const fix =
        c.component === 'live-gateway'
          ? `: its HPA needs maxReplicas >= ${n(c.pods)} and targetConnectionsPerPod <= ${n(Math.floor(target.viewers / c.pods))}`
          : c.component === 'ingestion'
            ? `: replicaCount ${n(c.pods)}`
            : `: maxReplicaCount ${n(c.pods)}`;
      lines.push(`**${c.component} is short**: ${n(c.pods)} pods asked, values-prod runs ${n(prod.max)}${fix}`);
    } else {
      lines.push(
        `${c.component} fits (${n(c.pods)} asked, values-prod runs ${prod.min === prod.max ? n(prod.max) : `${n(prod.min)}-${n(prod.max)}`})`,
      );
    }
  }
  return `Against charts/pitwall/values-prod.yaml: ${lines.join('; ')}.`;
}

function tenfold(run: RaceStartRun): string[] {
  const { race, directusCapacity } = run;
  const { distinct, cached } = run.runs;
  const scenario = cached.scenario;
  const rampSeconds = scenario.rampSeconds;
  const demand = scenario.viewers / rampSeconds;
  const capacity = directusCapacity.callsPerSecond;
  const lines: string[] = [];

  const projection = tenfoldProjection(run);
  const { target, podBudgetCores } = projection;
  const measured = raceMeasurements(run);
  const budget = n(podBudgetCores, 1);
  lines.push(
    `Ten times the load is ${n(target.positionsPerSecond / race.positionHz)} devices (${n(target.positionsPerSecond)} positions/s) and ` +
      `${n(target.viewers)} viewers within ${target.rampSeconds} s (${n(target.viewers / target.rampSeconds)} new subscriptions/s), over ten ` +
      `times the events, so that each viewer still watches ${n(race.devices / race.events)} cars and receives the frames it received here: ` +
      `${n(target.framesPerViewerPerSecond, 2)} per second (run B's frames sent over its viewer-seconds; at most ${n(1000 / run.batchWindowMs)} ` +
      `with a ${ms(run.batchWindowMs)} batch window). The projection costs each unit of work from the run and multiplies it by that load: ` +
      `a position by the devices-only phase's CPU over its positions/s (ingestion, writer, Redis, PostgreSQL, and the gateway's stream ` +
      `floor, which every gateway pod pays for every position); a frame sent by run B's gateway hold minus that floor over its frames/s; ` +
      `a new subscription by run B's ramp minus the floor and the frames the ramp sent (half the hold's, viewers arriving linearly) over ` +
      `its subscriptions/s; a login by its measured Directus CPU, for the ${n(target.loginShare * 100)}% of arriving viewers assumed to have ` +
      `no session; a token refresh per viewer every ${n(target.accessTokenTtlSeconds / 60)} min (ACCESS_TOKEN_TTL). Pods are planned at ` +
      `${budget} of their one core (every service is one Node.js thread): a zone of three lost moves its load onto the other two ` +
      `(${budget} x 1.5 = ${n(podBudgetCores * 1.5, 1)}), and bursts, garbage collection and queueing delay come on top of a mean. The gateway's ` +
      `pods n solve n x ${budget} >= n x floor + fan-out: the floor is paid per pod, the fan-out divides. The costs come from a machine where ` +
      `everything shares ${run.machine.cores} cores (a busy core costs more per unit than a quiet one), so they are pessimistic; rendered again ` +
      `from a quieter run, the same formulas size it.`,
    '',
    table(
      ['component', 'cores at 10x', `pods at ${budget} core`, 'values-prod runs', 'how it takes more'],
      projection.components.map((c) => [
        c.component,
        cores(c.cores, c.incomplete),
        pods(c),
        valuesProdCell(c, target),
        HOW_IT_GROWS[c.component],
      ]),
    ),
    '',
    table(
      ['component', 'unit', 'CPU per unit', 'units/s at 10x', 'cores at 10x'],
      projection.rows.map((r) => [
        r.component,
        r.unit,
        cpuPerUnit(r.cpuSecondsPerUnit),
        n(r.loadPerSecond),
        r.perPod ? `${cores(r.cores)} per pod` : cores(r.cores),
      ]),
    ),
    '',
    `${valuesProdVerdict(projection)} Measured at 1x: ${n(measured.positionsPerSecond)} positions/s with devices only; run B's gateway ` +
      `${cores(measured.gateway.rampCores ?? Number.NaN)} cores in the ramp and ${cores(measured.gateway.holdCores ?? Number.NaN)} in the hold ` +
      `for ${n(measured.gateway.viewers)} viewers (${n(measured.gateway.viewers * measured.gateway.framesPerViewerPerSecond)} frames/s); ` +
      `a token refresh's Directus CPU is not measured by this suite (suite \`directus-login\` measures the claim's share of it), so ` +
      `Directus is a lower bound (≥).`,
    '',
  );
  const shortAt1x = capacity < demand;
  const claimed = distinct.counters.claimAllowed ?? 0;
  const asked = distinct.calls.authorize;
  lines.push(
    `1. **Directus: authorizing the start is out of its way; logins and token refreshes are what is left.** The ramp brings ` +
      `${n(demand)} new subscriptions/s. Straight at Directus with the gateway's ${directusCapacity.concurrency} concurrent calls, ` +
      `\`GET /items/events/:id\` runs at ${n(capacity)}/s here (p50 ${ms(directusCapacity.p50Ms)}, p99 ${ms(directusCapacity.p99Ms)}; measured ` +
      `before the runs)${shortAt1x ? ', less than the ramp asks: a gateway asking once per subscription fails sessions at 1x already on this machine' : ''}. ` +
      `Every viewer's access token lists the events its user may read (\`pitwall_events\`, the business plane's Directus extension, ` +
      `evaluated by Directus at login and refresh), so in run A the gateway authorized ${n(claimed)} subscribes from the token and asked ` +
      `Directus ${n(asked)} times: ${n(distinct.callsPerSubscription, 3)} Directus calls per new subscription, entries reads included ` +
      `(before: one authorization call each). p99 time to snapshot was ${ms(distinct.report.stats.all.timeToSnapshot.p99)} with ` +
      `${n(failureRate(distinct) * 100, 1)}% of the sessions failed, against ${ms(cached.report.stats.all.timeToSnapshot.p99)} and ` +
      `${n(failureRate(cached) * 100, 1)}% with one account per event (run B)` +
      (failureRate(distinct) <= failureRate(cached) + 0.01
        ? ': with the claim, one account per viewer costs the start nothing more.'
        : `. Those failures are not Directus authorizing (it was asked ${n(asked)} times): the machine was short of CPU ` +
          `(processes outside the stack took ${n(cpuOf(distinct.cpuRamp, 'other processes'), 2)} of its ${run.machine.cores} cores in run A's ramp, ` +
          `the viewer workers' event loops ran ${ms(distinct.report.stats.eventLoopDelayP99Ms)} late at p99), so viewers timed out ` +
          `authenticating or waiting for a snapshot they could not read in time (failure reasons under "Viewers, gateway, Directus").`) +
      (run.backlogAfterA.calls > 0
        ? ` The gateway still called Directus ${n(run.backlogAfterA.calls)} times in the ${n(run.backlogAfterA.ms / 1000)} s after run A.`
        : ' Nothing was left queued for Directus after run A.') +
      ` At 10x the start's authorizations stay at about zero; what grows with viewers at Directus is issuing tokens: a login per ` +
      `arriving viewer without a session, and a refresh per viewer every ACCESS_TOKEN_TTL (15 min by default: ` +
      `${n((scenario.viewers * 10) / 900, 0)} refreshes/s for ${n(scenario.viewers * 10)} viewers), each with the claim's one ` +
      `permission-checked read of \`events\` (its cost beside a login without the extension: suite \`directus-login\` in ` +
      `[benchmarks](benchmarks.md)).`,
  );
  lines.push(
    `   **Re-validation: none for claim-authorized subscriptions.** A permission revoked in Directus leaves the claim at the token's ` +
      `next refresh, and the gateway then checks that subscription at Directus (ending it with \`forbidden\` when refused), so the token's ` +
      `lifetime bounds how stale a claim-authorized subscription can be and it is never re-validated periodically. The runs re-validate ` +
      `every ${n(run.revalidateIntervalMs.run / 1000)} s (default ${n(run.revalidateIntervalMs.default / 1000)} s), so any subscription ` +
      `re-validated would have shown: run A made ${n(distinct.counters.revalidations ?? 0)} re-validations ` +
      `(${n(distinct.revalidationsPerSecond, 2)}/s), run B ${n(cached.counters.revalidations ?? 0)}. Before the claim it was one call per ` +
      `subscription and interval: ${n(scenario.viewers / (run.revalidateIntervalMs.default / 1000))} calls/s for ${n(scenario.viewers)} ` +
      `viewers at the default, for as long as the race lasts.`,
  );
  if (run.defaultHashLogin !== undefined) {
    const login = run.defaultHashLogin;
    lines.push(
      `2. **Logins would come before it.** The viewers here logged in before the ramp, with cheap argon2 parameters (the ${n(scenario.viewers)} ` +
        `logins took ${n((run.setup[`${scenario.viewers} logins`] ?? Number.NaN) / 1000, 0)} s). A login with Directus' ` +
        `default hashing (argon2id, 64 MiB, 3 passes; measured on its administrator) took ${ms(login.wallMs)} and ${ms(login.cpuMs)} of Directus ` +
        `CPU: ${n((demand * 10 * login.cpuMs) / 1000, 0)} cores if all ${n(demand * 10)} arrivals/s at 10x logged in, ` +
        `${n((demand * 10 * target.loginShare * login.cpuMs) / 1000, 0)} for the ${n(target.loginShare * 100)}% without a session the ` +
        `projection assumes. The live map must arrive with a session (refresh token kept across visits), not log in at the start.`,
    );
  }
  const perPosition = (component: PerPositionComponent): ProjectionRow =>
    projection.rows.find((r) => r.component === component && r.unit === 'position') ?? {
      component,
      unit: 'position',
      cpuSecondsPerUnit: Number.NaN,
      loadPerSecond: target.positionsPerSecond,
      cores: Number.NaN,
      perPod: false,
    };
  const floorRow = projection.rows.find((r) => r.perPod);
  const floor = cpuOf(run.cpuDevicesOnly, 'live-gateway-1');
  const floorPerPod = floorRow?.cores ?? Number.NaN;
  const gatewayPeak = Math.max(cpuOf(cached.cpuRamp, 'live-gateway-1'), cpuOf(cached.cpuHold, 'live-gateway-1'));
  const apart = run.streamFloorAtTenX;
  const floorMeasure =
    apart?.complete === true
      ? `Measured apart at ${n(apart.positionsPerSecond)} positions/s (a gateway with no viewer, suite gateway-floor's measurement ` +
        `before the stack started), a position read costs ${cpuPerUnit(apart.microsecondsPerPosition / 1e6)} of CPU; with the pod's fixed ` +
        `costs from the devices-only phase`
      : `Costed as the devices-only phase's CPU over its positions/s (fixed costs included, so an upper bound; the apart measurement at ` +
        `10x ${apart === undefined ? 'was not made in this run' : 'did not read every position and is not used'})`;
  lines.push(
    `3. **The gateway's stream floor.** With the devices reporting and no viewer at all, the gateway used ${n(floor, 2)} cores ` +
      `for the ${n(run.devicesOnlyPositionsPerSecond)} positions/s (read in place, decoded without allocating per field, a position's JSON ` +
      `made only when something shows it); with ${n(scenario.viewers)} viewers (run B) it used ${n(gatewayPeak, 2)}. Fan-out divides over ` +
      `more pods, but every pod reads the whole stream in its own consumer group. ${floorMeasure}, at 10x that floor is ` +
      `${n(floorPerPod, 2)} cores per pod, whatever its viewers` +
      (floorPerPod >= podBudgetCores
        ? `, over the ${budget} core a pod is planned at: no number of pods serves 10x, the first limit of the telemetry plane. Spreading ` +
          `pods over shards or events (each pod reading only the shards its viewers watch) moves it.`
        : `, leaving ${n(podBudgetCores - floorPerPod, 2)} of a pod's ${budget} core for fan-out: the pods in the table.`),
    `4. **Ingestion, Redis, the writer and PostgreSQL** grow with positions/s only. Per position, with devices only: ingestion ` +
      `${cpuPerUnit(perPosition('ingestion').cpuSecondsPerUnit)}, writer ${cpuPerUnit(perPosition('writer').cpuSecondsPerUnit)}, ` +
      `PostgreSQL ${cpuPerUnit(perPosition('postgres').cpuSecondsPerUnit)}, Redis ${cpuPerUnit(perPosition('redis').cpuSecondsPerUnit)} of CPU ` +
      `(fixed costs included); at ${n(target.positionsPerSecond)}/s that is ${cores(perPosition('ingestion').cores)}, ` +
      `${cores(perPosition('writer').cores)}, ${cores(perPosition('postgres').cores)} and ${cores(perPosition('redis').cores)} cores. ` +
      `Ingestion and the writer scale out (devices spread over pods; writers split the \`processor\` group), PostgreSQL takes a bigger ` +
      `machine; Redis is one thread per master and fsyncs every write (AOF, appendfsync always): shard the stream (STREAM_SHARDS over a ` +
      `Redis Cluster) before a master nears ${budget} core.`,
  );
  return lines;
}

function verdictList(m: MeasuredRun): string {
  const missed = m.report.verdicts.filter((v) => !v.ok).map((v) => v.name.replace(/ \(.*\)$/, ''));
  return missed.length === 0 ? 'every threshold of the scenario met' : `missed: ${missed.join(', ')}`;
}

function summary(run: RaceStartRun): string[] {
  const { race, directusCapacity } = run;
  const { distinct, cached } = run.runs;
  const scenario = cached.scenario;
  const A = distinct.report.stats.all;
  const B = cached.report.stats.all;
  const busy = (uses: CpuUse[]): number => uses.reduce((sum, u) => sum + u.cores, 0);
  const demand = scenario.viewers / scenario.rampSeconds;
  const projection = tenfoldProjection(run);
  const floor10x = projection.rows.find((r) => r.perPod)?.cores ?? Number.NaN;
  return [
    `- **Run B, Directus out of the way** (one account per event): ${n(B.snapshots)} of ${n(scenario.viewers)} viewers got their snapshot, ` +
      `p99 time to first snapshot ${ms(B.timeToSnapshot.p99)} (bare WebSocket upgrade of the same connections: ` +
      `${ms(B.timeToOpen.p99)}), p99 delivery latency ${ms(B.deliveryLatency.p99)} at the viewers and ` +
      `${ms(cached.gatewayFanoutMs.p99)} rx -> publish at the gateway (batch window ${ms(run.batchWindowMs)}); ${verdictList(cached)}.`,
    `- **Run A, one Directus account per viewer**, each token listing its user's events (\`pitwall_events\`): ${n(A.snapshots)} ` +
      `snapshots in ${n(A.sessions)} sessions (${n(A.failedSessions)} failed), p99 time to first snapshot ` +
      `${ms(A.timeToSnapshot.p99)}; ${verdictList(distinct)}. Directus serves ${n(directusCapacity.callsPerSecond)} ` +
      `authorizations/s here against ${n(demand)} new subscriptions/s: the gateway asked it ${n(distinct.calls.authorize)} times.`,
    `- **Directus calls per new subscription**: ${n(distinct.callsPerSubscription, 3)} (A) and ${n(cached.callsPerSubscription, 3)} (B), ` +
      `entries reads included, against 1 for a gateway asking once per subscription; **re-validation calls**: ` +
      `${n(distinct.revalidationsPerSecond, 2)}/s (A), ${n(cached.revalidationsPerSecond, 2)}/s (B).`,
    `- **Acknowledged positions missing from PostgreSQL: ${n(run.stored.missing)}** of ${n(run.stored.acked)} (${n(race.devices)} devices ` +
      `throughout both runs).`,
    `- The two cores were ${n(Math.min(busy(distinct.cpuHold), busy(cached.cpuHold)), 1)}-${n(Math.max(busy(distinct.cpuRamp), busy(cached.cpuRamp)), 1)} ` +
      `busy during the runs (the load generator included), ${n(busy(run.cpuDevicesOnly), 1)} with the devices alone: the latencies include ` +
      `waiting for a core.`,
    `- **At 10x** (${n(race.devices * 10)} devices, ${n(scenario.viewers * 10)} viewers within ${scenario.rampSeconds} s), costed per ` +
      `unit, the components rank ` +
      projection.components
        .slice(0, 3)
        .map((c) =>
          c.floorExceedsBudget
            ? `${c.component} (no pod count fits: its stream floor alone is over a pod's budget)`
            : `${c.component} (${cores(c.cores, c.incomplete)} cores, ${pods(c)}${c.scaling === 'pods' ? ' pods' : ''})`,
        )
        .join(', ') +
      `: authorizing the start costs Directus about nothing (the token claim), its share is logins and refreshes, and each ` +
      `gateway pod has a stream floor of ${n(floor10x, 2)} cores to decode ${n(race.devices * race.positionHz * 10)} positions/s before ` +
      `serving anyone. ${valuesProdVerdict(projection)} Details below.`,
  ];
}

export function renderRaceStartReport(run: RaceStartRun): string {
  const { race, directusCapacity } = run;
  const { distinct, cached } = run.runs;
  const scenario = distinct.scenario;
  const A = distinct.report.stats.all;
  const B = cached.report.stats.all;
  const out: string[] = [];
  out.push('# Race start on one machine');
  out.push('');
  out.push(
    'Written by `make bench` (suite `race-start`) from the run described here; rerun it to refresh, or render it again from the ' +
      "run's saved figures (`node services/bench/dist/render-race-start.js [.pitwall/bench/race-start/run.json]`). Every part is a real process on " +
      'this one machine: PostgreSQL, Directus 11, Redis (AOF, fsync always), ingestion, writer and live gateway from their builds, the ' +
      'device simulator (Teltonika Codec 8 Extended over TCP) and the load harness of `load-tests` running the shared `race-start` ' +
      'scenario (the same definitions the k6 scripts use). They all share the same cores with each other and with whatever else runs on ' +
      'the machine, so every figure is pessimistic for a cluster; read the ratios and the ranking, not the absolute numbers.',
  );
  out.push('');
  out.push(`- machine: ${run.machine.cpuModel} x ${run.machine.cores}, ${n(run.machine.memoryGiB, 1)} GiB, Node ${run.machine.node}`);
  out.push(`- date: ${new Date(distinct.report.startAtMs).toISOString()}`);
  out.push('');
  out.push('## Summary');
  out.push('');
  out.push(...summary(run));
  out.push('');
  out.push('## What ran');
  out.push('');
  out.push(
    table(
      ['', ''],
      [
        [
          'devices',
          `${n(race.devices)} at ${race.positionHz} Hz over TCP, in ${race.events} events (${n(race.devices / race.events)} per event)`,
        ],
        [
          'viewers',
          `${n(scenario.viewers)}, linear ramp over ${scenario.rampSeconds} s, then ${scenario.holdSeconds} s connected; twice on the same stack:`,
        ],
        [
          'run A',
          `one Directus account per viewer (${n(distinct.accounts)} accounts), each access token listing the events its user may read ` +
            '(`pitwall_events`): a subscribe to a listed event is authorized by the gateway without a Directus call (before: one call each)',
        ],
        [
          'run B',
          `one account per event (${n(cached.accounts)}; all viewers of an event share it): the same claim path (before the claim, the ` +
            "gateway's (user, event) permission cache stood in for it)",
        ],
        [
          'viewer',
          'open /live, `auth` message, `subscribe` to one event (round-robin), snapshot, positions until the end; retries on ' +
            "`authorization_unavailable` / `rate_limited` after `retry_after_ms` with jitter (the protocol's `backoffDelayMs`)",
        ],
        ['accounts', 'Directus users logged in (/auth/login) before the ramp'],
        [
          'harness',
          `2 worker processes with ws clients; every frame received and counted, 1 positions frame in ${run.parseEvery} parsed for latency`,
        ],
        [
          'gateway',
          `one process, DIRECTUS_SECRET set (tokens verified locally), batch window ${run.batchWindowMs} ms, re-validation every ` +
            `${n(run.revalidateIntervalMs.run / 1000)} s (default ${n(run.revalidateIntervalMs.default / 1000)} s; shorter in the runs so ` +
            `that any re-validated subscription shows), Directus reached through a counting proxy`,
        ],
        [
          'set-up',
          Object.entries(run.setup)
            .map(([k, v]) => `${k} ${n(v / 1000, 1)} s`)
            .join('; '),
        ],
      ],
    ),
  );
  out.push('');
  out.push('## Results');
  out.push('');
  out.push(
    table(
      ['figure', 'run A (one account per viewer)', 'run B (one account per event)', 'baseline (same run)'],
      [
        [
          'p99 time to first snapshot',
          ms(A.timeToSnapshot.p99),
          ms(B.timeToSnapshot.p99),
          `p99 bare WebSocket upgrade of the same connections: ${ms(A.timeToOpen.p99)} (A), ${ms(B.timeToOpen.p99)} (B)`,
        ],
        ['sessions failed', `${n(A.failedSessions)} of ${n(A.sessions)}`, `${n(B.failedSessions)} of ${n(B.sessions)}`, ''],
        [
          'p99 delivery latency at the viewers (arrival - rx)',
          ms(A.deliveryLatency.p99),
          ms(B.deliveryLatency.p99),
          `configured batch window: ${ms(run.batchWindowMs)}`,
        ],
        [
          'p99 rx -> publish at the gateway',
          ms(distinct.gatewayFanoutMs.p99),
          ms(cached.gatewayFanoutMs.p99),
          `configured batch window: ${ms(run.batchWindowMs)}`,
        ],
        [
          'p99 event loop delay of the viewer workers',
          ms(distinct.report.stats.eventLoopDelayP99Ms),
          ms(cached.report.stats.eventLoopDelayP99Ms),
          'how late the clients read: part of the latency above',
        ],
        [
          'Directus calls per new subscription',
          n(distinct.callsPerSubscription, 3),
          n(cached.callsPerSubscription, 3),
          'naive design (one authorization call per subscription): 1',
        ],
        [
          'new subscriptions/s asked for',
          n(scenario.viewers / scenario.rampSeconds),
          '',
          `authorizations/s Directus serves, straight at ${directusCapacity.concurrency} concurrent: ${n(directusCapacity.callsPerSecond)} (p50 ${ms(directusCapacity.p50Ms)}, p99 ${ms(directusCapacity.p99Ms)})`,
        ],
        [
          'acknowledged positions missing from PostgreSQL',
          n(run.stored.missing),
          '',
          `of ${n(run.stored.acked)} acknowledged to the devices over both runs (${n(run.stored.duplicated)} stored twice)`,
        ],
      ],
    ),
  );
  out.push('');
  out.push(
    table(
      ['viewer measurement', 'samples', 'p50', 'p90', 'p95', 'p99', 'max'],
      [
        percentileRow('A: time to open (TCP + upgrade)', A.timeToOpen),
        percentileRow('A: time to snapshot', A.timeToSnapshot),
        percentileRow('A: delivery latency', A.deliveryLatency),
        percentileRow('B: time to open (TCP + upgrade)', B.timeToOpen),
        percentileRow('B: time to snapshot', B.timeToSnapshot),
        percentileRow('B: delivery latency', B.deliveryLatency),
      ],
    ),
  );
  out.push('');
  out.push(`The shared scenario's thresholds (what a k6 run against a cluster fails on):`);
  out.push('');
  out.push(
    table(
      ['threshold', 'limit', 'run A', 'run B'],
      distinct.report.verdicts.map((v, i) => {
        const b = cached.report.verdicts[i];
        const show = (x: { value: number; ok: boolean } | undefined): string =>
          x ? `${n(x.value, v.name.includes('rate') ? 4 : 0)} ${x.ok ? 'met' : '**missed**'}` : '';
        return [v.name, String(v.limit), show(v), show(b)];
      }),
    ),
  );
  out.push('');
  out.push('## Viewers, gateway, Directus');
  out.push('');
  out.push(...runFacts('A', distinct), ...runFacts('B', cached));
  out.push('## Storage');
  out.push('');
  out.push(
    `${n(distinct.ackedDuringRun + cached.ackedDuringRun)} positions acknowledged during the two viewer runs; after the devices drained ` +
      `(${run.drained ? 'every record acknowledged' : '**not drained**'}) ${n(run.stored.acked)} acknowledged in total, ` +
      `**${n(run.stored.missing)} missing** from \`positions\`, ${n(run.stored.duplicated)} duplicated (simulator: ${n(run.simulation.resent)} ` +
      `records resent, ${n(run.simulation.reconnects)} reconnects, ${n(run.simulation.ackTimeouts)} ack timeouts).`,
  );
  out.push('');
  out.push('## Where the time goes');
  out.push('');
  out.push(
    'CPU of each part (a process and its children, from /proc), in cores (1 = one core busy), in the ramp and in the hold of each run; ' +
      '`other processes` is everything else the machine ran meanwhile:',
  );
  out.push('');
  const parts = [...new Set([run.cpuDevicesOnly, ...[distinct, cached].flatMap((m) => [m.cpuRamp, m.cpuHold])].flat().map((u) => u.part))];
  out.push(
    table(
      ['part', 'devices only', 'A ramp', 'A hold', 'B ramp', 'B hold'],
      parts.map((p) => [
        p,
        n(cpuOf(run.cpuDevicesOnly, p), 2),
        n(cpuOf(distinct.cpuRamp, p), 2),
        n(cpuOf(distinct.cpuHold, p), 2),
        n(cpuOf(cached.cpuRamp, p), 2),
        n(cpuOf(cached.cpuHold, p), 2),
      ]),
    ),
  );
  out.push('');
  const total = (uses: CpuUse[]): number => uses.reduce((sum, u) => sum + u.cores, 0);
  out.push(
    `Summed over every process, the machine was busy ${n(total(run.cpuDevicesOnly), 2)} cores with the devices only, ` +
      `${n(total(distinct.cpuRamp), 2)} / ${n(total(distinct.cpuHold), 2)} cores in run A's ` +
      `ramp / hold and ${n(total(cached.cpuRamp), 2)} / ${n(total(cached.cpuHold), 2)} in run B's, of ${run.machine.cores}: where that is close ` +
      `to all of them, every process (the viewers' clients included) waited for a core, and the latencies above carry that wait.`,
  );
  out.push('');
  for (const { service, summary } of run.profiles) {
    out.push(`### ${service} (CPU profile over both runs)`);
    out.push('');
    out.push(
      `${n(summary.busyPercent, 0)}% busy over ${n(summary.wallMs / 1000, 1)} s, ${n(summary.gcPercent, 1)}% in garbage collection. ` +
        `By area: ${summary.byArea
          .slice(0, 6)
          .map((a) => `${a.area} ${n(a.selfPercent, 1)}%`)
          .join(', ')}.`,
    );
    out.push('');
    out.push(
      table(
        ['function (self time)', 'where', 'share of wall time'],
        summary.top.map((f) => [`\`${f.name}\``, `\`${f.location}\``, `${n(f.selfPercent, 1)}%`]),
      ),
    );
    out.push('');
  }
  out.push('## What saturates first at 10x');
  out.push('');
  out.push(...tenfold(run));
  out.push('');
  return `${out.join('\n')}\n`;
}
