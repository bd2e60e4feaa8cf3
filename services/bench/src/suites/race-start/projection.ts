// The 10x projection of docs/race-start.md: per-unit CPU costs measured in the race start (a position,
// a frame sent to a viewer, a new subscription, a login) times the load at the target, per component,
// and the pods that load asks for when a pod is planned at POD_BUDGET_CORES of its one core. Pure:
// the run's figures in, the table out.

/**
 * CPU a pod is planned to use, in cores. Every service is one Node.js thread, so a pod has one core at
 * most. 0.6 leaves room for what an average hides: a zone of three lost puts its load on the other two
 * (0.6 x 1.5 = 0.9, still under one core), garbage collection and bursts (a race start's ramp, a
 * reconnect storm) come on top of the mean, and queueing delay grows steeply as a thread nears 100%.
 */
export const POD_BUDGET_CORES = 0.6;

export const COMPONENTS = ['ingestion', 'writer', 'redis', 'postgres', 'live-gateway', 'directus'] as const;
export type Component = (typeof COMPONENTS)[number];

/** Components whose work grows with positions only; their devices-only CPU is their cost per position. */
export const PER_POSITION_COMPONENTS = ['ingestion', 'writer', 'redis', 'postgres'] as const;
export type PerPositionComponent = (typeof PER_POSITION_COMPONENTS)[number];

/** How a component takes more load: pods of one core, Redis masters (one thread each), or a bigger machine. */
export type Scaling = 'pods' | 'masters' | 'machine';

const SCALING: Record<Component, Scaling> = {
  ingestion: 'pods',
  writer: 'pods',
  redis: 'masters',
  postgres: 'machine',
  'live-gateway': 'pods',
  directus: 'pods',
};

/** What the run measured at 1x. `undefined`: that phase or part was not measured. */
export interface RaceMeasurements {
  /** Positions/s acknowledged while only the devices ran. */
  positionsPerSecond: number;
  /**
   * The gateway's CPU per position read, measured apart at the target's rate (no fixed costs in it);
   * undefined: the devices-only cores over positions/s stand in for it (fixed costs included).
   */
  gatewayFloorCpuSecondsPerPosition?: number | undefined;
  /** Cores of each part while only the devices ran; the gateway's is its stream floor. */
  devicesOnlyCores: Partial<Record<PerPositionComponent | 'live-gateway', number>>;
  gateway: {
    /** Cores in run B's hold (every viewer connected, no new subscription). */
    holdCores: number | undefined;
    /** Cores in run B's ramp (viewers arriving). */
    rampCores: number | undefined;
    /** Viewers connected in the hold. */
    viewers: number;
    /** Frames sent per viewer per second (framesPerViewerPerSecond). */
    framesPerViewerPerSecond: number;
    /** New subscriptions per second in the ramp. */
    subscriptionsPerSecond: number;
  };
  directus: {
    /** Directus CPU of one login with its default password hashing, ms. */
    loginCpuMs: number | undefined;
    /** Directus CPU of one token refresh (with the claim's read of `events`), ms. */
    refreshCpuMs: number | undefined;
  };
}

/** The load to project to. */
export interface TargetLoad {
  positionsPerSecond: number;
  viewers: number;
  /** Frames each viewer receives per second (as measured: it is a property of an event, not of the scale). */
  framesPerViewerPerSecond: number;
  /** Every viewer arrives within this many seconds. */
  rampSeconds: number;
  /** Share of the arriving viewers with no session (refresh token) who log in. */
  loginShare: number;
  /** Each viewer refreshes its token once per access-token lifetime (Directus ACCESS_TOKEN_TTL). */
  accessTokenTtlSeconds: number;
}

/** One cost line: a unit of work a component pays for, its cost and how much of it the target asks. */
export interface ProjectionRow {
  component: Component;
  unit: string;
  /** CPU seconds per unit (NaN: not measured). */
  cpuSecondsPerUnit: number;
  /** Units per second at the target. */
  loadPerSecond: number;
  /** Cores at the target: `cpuSecondsPerUnit x loadPerSecond`; for the gateway's stream floor, per pod. */
  cores: number;
  /** Paid by every pod of the component (the gateway's stream floor), not divided among them. */
  perPod: boolean;
}

export interface ComponentProjection {
  component: Component;
  scaling: Scaling;
  /** Cores at the target, over all pods (NaN: none of its costs measured; Infinity: no pod count fits). */
  cores: number;
  /** Pods (or Redis masters) at POD_BUDGET_CORES each; NaN for a bigger machine or nothing measured; Infinity when pods do not help. */
  pods: number;
  /** Some of its units were not measured: cores and pods are then a lower bound. */
  incomplete: boolean;
  /** The gateway: what every pod pays before serving a viewer exceeds the pod budget, so more pods do not help. */
  floorExceedsBudget: boolean;
}

export interface Projection {
  target: TargetLoad;
  podBudgetCores: number;
  rows: ProjectionRow[];
  components: ComponentProjection[];
}

/** Cores per unit/s, or NaN when either is missing or the rate is not positive. */
function perUnit(cores: number | undefined, perSecond: number): number {
  if (cores === undefined || !Number.isFinite(cores) || !Number.isFinite(perSecond) || perSecond <= 0) return Number.NaN;
  return Math.max(0, cores) / perSecond;
}

/**
 * Frames sent per viewer per second over a run: the frames over the viewer-seconds, viewers arriving
 * linearly over the ramp (on average half of it connected) and all connected until the run ends.
 */
export function framesPerViewerPerSecond(m: { framesSent: number; viewers: number; runSeconds: number; rampSeconds: number }): number {
  const viewerSeconds = m.viewers * (m.runSeconds - m.rampSeconds / 2);
  return viewerSeconds > 0 ? m.framesSent / viewerSeconds : Number.NaN;
}

/** The gateway's cost lines at 1x: per frame sent (hold minus floor) and per new subscription. */
function gatewayUnitCosts(m: RaceMeasurements): { floor: number; fixedCores: number; frame: number; subscription: number } {
  const floorCores = m.devicesOnlyCores['live-gateway'];
  const marginal = m.gatewayFloorCpuSecondsPerPosition;
  const measuredApart = marginal !== undefined && Number.isFinite(marginal) && marginal >= 0;
  const floor = measuredApart ? marginal : perUnit(floorCores, m.positionsPerSecond);
  // A pod's costs that do not grow with positions (timers, metrics, the event loop itself): what the
  // devices-only phase spent beyond its positions at the marginal cost. Known only with the marginal cost.
  const fixedCores =
    measuredApart && floorCores !== undefined && Number.isFinite(m.positionsPerSecond)
      ? Math.max(0, floorCores - marginal * m.positionsPerSecond)
      : 0;
  const { holdCores, rampCores, viewers, subscriptionsPerSecond } = m.gateway;
  const framesPerSecond = viewers * m.gateway.framesPerViewerPerSecond;
  const fanoutHold = holdCores === undefined || floorCores === undefined ? undefined : holdCores - floorCores;
  const frame = perUnit(fanoutHold, framesPerSecond);
  // The ramp also sends frames, to the viewers already in: half the hold's with a linear ramp.
  const subscribing =
    rampCores === undefined || floorCores === undefined || fanoutHold === undefined ? undefined : rampCores - floorCores - fanoutHold / 2;
  return { floor, fixedCores, frame, subscription: perUnit(subscribing, subscriptionsPerSecond) };
}

function row(component: Component, unit: string, cpuSecondsPerUnit: number, loadPerSecond: number, perPod = false): ProjectionRow {
  return { component, unit, cpuSecondsPerUnit, loadPerSecond, cores: cpuSecondsPerUnit * loadPerSecond, perPod };
}

/** The gateway's stream floor per pod: every position at its cost, plus the pod's fixed costs. */
function floorRow(cpuSecondsPerPosition: number, fixedCores: number, positionsPerSecond: number): ProjectionRow {
  const line = row('live-gateway', 'position read (stream floor, every pod)', cpuSecondsPerPosition, positionsPerSecond, true);
  return { ...line, cores: line.cores + fixedCores };
}

function podsFor(cores: number, budget: number): number {
  if (!Number.isFinite(cores)) return Number.NaN;
  return Math.max(1, Math.ceil(cores / budget));
}

/**
 * Pods of the gateway: every pod pays the floor (it reads the whole stream), the fan-out (frames and
 * subscriptions) divides over them. n pods fit when n x budget >= n x floor + fanout.
 */
function gatewayProjection(rows: ProjectionRow[], budget: number): ComponentProjection {
  const floor = rows.find((r) => r.perPod)?.cores ?? Number.NaN;
  const fanoutRows = rows.filter((r) => !r.perPod);
  const measured = fanoutRows.filter((r) => Number.isFinite(r.cores));
  const fanout = measured.reduce((sum, r) => sum + r.cores, 0);
  const base: Pick<ComponentProjection, 'component' | 'scaling' | 'incomplete'> = {
    component: 'live-gateway',
    scaling: SCALING['live-gateway'],
    incomplete: measured.length < fanoutRows.length,
  };
  if (!Number.isFinite(floor)) return { ...base, cores: Number.NaN, pods: Number.NaN, incomplete: true, floorExceedsBudget: false };
  if (floor >= budget) return { ...base, cores: Number.POSITIVE_INFINITY, pods: Number.POSITIVE_INFINITY, floorExceedsBudget: true };
  const pods = Math.max(1, Math.ceil(fanout / (budget - floor)));
  return { ...base, cores: pods * floor + fanout, pods, floorExceedsBudget: false };
}

function componentProjection(component: Component, rows: ProjectionRow[], budget: number): ComponentProjection {
  if (component === 'live-gateway') return gatewayProjection(rows, budget);
  const measured = rows.filter((r) => Number.isFinite(r.cores));
  const cores = measured.length === 0 ? Number.NaN : measured.reduce((sum, r) => sum + r.cores, 0);
  const scaling = SCALING[component];
  return {
    component,
    scaling,
    cores,
    pods: scaling === 'machine' ? Number.NaN : podsFor(cores, budget),
    incomplete: measured.length < rows.length,
    floorExceedsBudget: false,
  };
}

/** Each component's cost lines at the target, its cores and pods, largest first. */
export function projectLoad(m: RaceMeasurements, target: TargetLoad, budget = POD_BUDGET_CORES): Projection {
  const positions = target.positionsPerSecond;
  const gateway = gatewayUnitCosts(m);
  const subscriptionsPerSecond = target.rampSeconds > 0 ? target.viewers / target.rampSeconds : Number.NaN;
  const cpuMs = (value: number | undefined): number => (value === undefined ? Number.NaN : value / 1000);
  const rows: ProjectionRow[] = [
    ...PER_POSITION_COMPONENTS.map((c) => row(c, 'position', perUnit(m.devicesOnlyCores[c], m.positionsPerSecond), positions)),
    floorRow(gateway.floor, gateway.fixedCores, positions),
    row('live-gateway', 'frame sent', gateway.frame, target.viewers * target.framesPerViewerPerSecond),
    row('live-gateway', 'new subscription', gateway.subscription, subscriptionsPerSecond),
    row('directus', 'login', cpuMs(m.directus.loginCpuMs), subscriptionsPerSecond * target.loginShare),
    row('directus', 'token refresh', cpuMs(m.directus.refreshCpuMs), target.viewers / target.accessTokenTtlSeconds),
  ];
  const components = COMPONENTS.map((c) =>
    componentProjection(
      c,
      rows.filter((r) => r.component === c),
      budget,
    ),
  ).sort((a, b) => rank(b) - rank(a));
  return { target, podBudgetCores: budget, rows, components };
}

function rank(c: ComponentProjection): number {
  return Number.isNaN(c.cores) ? -1 : c.cores;
}

/** Pods the production values run (charts/pitwall/values-prod.yaml; a test pins these to the file). */
export const VALUES_PROD = {
  ingestion: { replicaCount: 3 },
  writer: { minReplicaCount: 2, maxReplicaCount: 8 },
  liveGateway: { minReplicas: 3, maxReplicas: 20, targetConnectionsPerPod: 4_000 },
} as const;

/** Pods values-prod runs for a component at the target: [fewest, most it would run there]. */
export function valuesProdPods(component: Component, target: TargetLoad): { min: number; max: number } | undefined {
  switch (component) {
    case 'ingestion':
      return { min: VALUES_PROD.ingestion.replicaCount, max: VALUES_PROD.ingestion.replicaCount };
    case 'writer':
      return { min: VALUES_PROD.writer.minReplicaCount, max: VALUES_PROD.writer.maxReplicaCount };
    case 'live-gateway': {
      // The HPA scales on connections, not CPU: at the target it settles where connections/pod meet the target.
      const { minReplicas, maxReplicas, targetConnectionsPerPod } = VALUES_PROD.liveGateway;
      const byConnections = Math.ceil(target.viewers / targetConnectionsPerPod);
      return { min: minReplicas, max: Math.min(maxReplicas, Math.max(minReplicas, byConnections)) };
    }
    default:
      return undefined;
  }
}
