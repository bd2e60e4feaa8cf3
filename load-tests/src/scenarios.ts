// The load scenarios, defined once for the k6 scripts (load-tests/k6, run against a cluster) and the
// Node harness (load-tests/src, run on one machine by tests and `make bench`). Plain data and pure
// functions only: k6 runs this file in its own JavaScript runtime (no Node APIs) and Node runs its
// compiled form, so it imports nothing.

/** Names of the custom metrics, the same in k6 output and in the harness's report. */
export const METRIC = {
  /** Trend (ms): socket constructed until the WebSocket is open (TCP + HTTP upgrade). */
  timeToOpen: 'pitwall_viewer_time_to_open',
  /** Trend (ms): socket constructed until the `subscribed` frame with the snapshot arrived. */
  timeToSnapshot: 'pitwall_viewer_time_to_snapshot',
  /** Trend (ms): arrival time minus the position's `rx` (ingestion receive time), per position. */
  deliveryLatency: 'pitwall_viewer_delivery_latency',
  /** Rate: viewer sessions that did not reach their snapshot, or that the server ended abnormally. */
  sessionFailed: 'pitwall_viewer_session_failed',
  /** Counter: positions received in `positions` frames. */
  positionsReceived: 'pitwall_viewer_positions_received',
  /** Counter: connections the gateway closed with 4401 (unauthenticated or token expired). */
  unauthenticatedCloses: 'pitwall_viewer_closes_4401',
  /** Rate: token refreshes (Directus /auth/refresh, then a new `auth` message) that failed. */
  tokenRefreshFailed: 'pitwall_viewer_token_refresh_failed',
} as const;

/** Tag of every sample: the first connection of a viewer, or its return after a drop. */
export type ViewerPhase = 'initial' | 'reconnect';

/** What a run must meet; k6 turns it into thresholds that fail the run, the harness into a verdict. */
export interface ViewerSlo {
  /** p99 of socket constructed until snapshot received. */
  timeToSnapshotP99Ms: number;
  /** p99 of now minus `rx` over every position received. */
  deliveryLatencyP99Ms: number;
  /** Largest tolerated share of failed viewer sessions (0.01 = 1%). */
  maxSessionFailureRate: number;
}

interface ScenarioBase {
  /** Viewers (WebSocket connections) at the peak: N. */
  viewers: number;
  /** Every viewer has connected within this many seconds (linear ramp from 0). */
  rampSeconds: number;
  /** Seconds the viewers stay connected after the ramp. */
  holdSeconds: number;
  /** A viewer without its snapshot this long after connecting counts as failed. */
  snapshotTimeoutSeconds: number;
  slo: ViewerSlo;
}

/** Every viewer connects within the ramp, subscribes to one event and watches. */
export interface RaceStartScenario extends ScenarioBase {
  kind: 'race-start';
}

/**
 * After the ramp and a settle time, every viewer drops its connection and returns within a window;
 * `holdSeconds` counts from the drop and must leave time for the last returns to get their snapshot.
 */
export interface ReconnectStormScenario extends ScenarioBase {
  kind: 'reconnect-storm';
  /** Seconds between the end of the ramp and the storm. */
  settleSeconds: number;
  /** Every viewer reconnects at a uniformly random moment within this many seconds of the drop. */
  reconnectWindowSeconds: number;
  /** The SLO for the returning viewers (tag phase=reconnect). */
  reconnectSlo: ViewerSlo;
}

/**
 * Long-lived connections whose access tokens expire during the run: each viewer refreshes its session
 * at Directus (/auth/refresh) before expiry and sends the new token in an `auth` message. Run it with
 * a short Directus ACCESS_TOKEN_TTL (e.g. 2m) so that many refreshes happen.
 */
export interface TokenRefreshSoakScenario extends ScenarioBase {
  kind: 'token-refresh-soak';
  /** Refresh this many seconds before `expires_at` (at most half of the token's remaining life). */
  refreshLeadSeconds: number;
  /** Closes with 4401 tolerated (zero: a refreshed viewer is never dropped for its token). */
  maxUnauthenticatedCloses: number;
}

export type Scenario = RaceStartScenario | ReconnectStormScenario | TokenRefreshSoakScenario;

/** The race the devices drive, for harnesses that simulate it (k6 watches whatever the cluster runs). */
export interface RaceShape {
  devices: number;
  /** Devices are split evenly over this many events; viewers are spread round-robin over them. */
  events: number;
  /** Positions per second per device. */
  positionHz: number;
}

const liveMapSlo: ViewerSlo = { timeToSnapshotP99Ms: 2_000, deliveryLatencyP99Ms: 1_000, maxSessionFailureRate: 0.01 };

/** The cluster scenarios of the k6 scripts (override with env variables there). */
export const SCENARIOS: {
  raceStart: RaceStartScenario;
  reconnectStorm: ReconnectStormScenario;
  tokenRefreshSoak: TokenRefreshSoakScenario;
} = {
  raceStart: {
    kind: 'race-start',
    viewers: 5_000,
    rampSeconds: 60,
    holdSeconds: 120,
    snapshotTimeoutSeconds: 10,
    slo: liveMapSlo,
  },
  reconnectStorm: {
    kind: 'reconnect-storm',
    viewers: 5_000,
    rampSeconds: 60,
    holdSeconds: 60,
    snapshotTimeoutSeconds: 10,
    settleSeconds: 30,
    reconnectWindowSeconds: 10,
    slo: liveMapSlo,
    reconnectSlo: { ...liveMapSlo, timeToSnapshotP99Ms: 3_000 },
  },
  tokenRefreshSoak: {
    kind: 'token-refresh-soak',
    viewers: 500,
    rampSeconds: 60,
    holdSeconds: 1_800,
    snapshotTimeoutSeconds: 10,
    refreshLeadSeconds: 30,
    maxUnauthenticatedCloses: 0,
    slo: liveMapSlo,
  },
};

/**
 * The end-to-end race start of `make bench` on one machine: 2,000 devices at 1 Hz (40 events of 50 cars), 5,000
 * viewers within 30 s.
 */
export const LOCAL_RACE_START: { scenario: RaceStartScenario; race: RaceShape } = {
  scenario: { ...SCENARIOS.raceStart, viewers: 5_000, rampSeconds: 30, holdSeconds: 30 },
  race: { devices: 2_000, events: 40, positionHz: 1 },
};

/** A handful of viewers and devices: prove the harness end to end in `make test` (seconds each). */
export const SMOKE_RACE_START: { scenario: RaceStartScenario; race: RaceShape } = {
  scenario: { ...SCENARIOS.raceStart, viewers: 12, rampSeconds: 2, holdSeconds: 3 },
  race: { devices: 6, events: 2, positionHz: 1 },
};

export const SMOKE_RECONNECT_STORM: ReconnectStormScenario = {
  ...SCENARIOS.reconnectStorm,
  viewers: 12,
  rampSeconds: 1,
  settleSeconds: 2,
  reconnectWindowSeconds: 2,
  holdSeconds: 5,
};

/** Needs a Directus whose access tokens live about 10 s: each viewer refreshes at least once in the hold. */
export const SMOKE_TOKEN_REFRESH_SOAK: TokenRefreshSoakScenario = {
  ...SCENARIOS.tokenRefreshSoak,
  viewers: 4,
  rampSeconds: 1,
  holdSeconds: 8,
};

/** Seconds from the first connection until every viewer has closed. */
export function scenarioDurationSeconds(scenario: Scenario): number {
  return scenario.rampSeconds + scenario.holdSeconds + (scenario.kind === 'reconnect-storm' ? scenario.settleSeconds : 0);
}

/** For the reconnect storm: seconds after the first connection at which every viewer drops. */
export function stormAtSeconds(scenario: ReconnectStormScenario): number {
  return scenario.rampSeconds + scenario.settleSeconds;
}

/** Seconds after the start at which viewer `index` (0-based) of `viewers` connects: a linear ramp. */
export function connectAtSeconds(index: number, viewers: number, rampSeconds: number): number {
  return viewers <= 1 ? 0 : (rampSeconds * index) / viewers;
}

/** Event of viewer `index`: round-robin over the events, so every event gets its share of viewers. */
export function eventForViewer<T>(index: number, eventIds: readonly T[]): T {
  const id = eventIds[index % eventIds.length];
  if (id === undefined) throw new Error('no event ids to spread viewers over');
  return id;
}

/** k6 `ramping-vus` stages: up to N over the ramp, then N for the rest of the run. */
export function k6Stages(scenario: Scenario): { duration: string; target: number }[] {
  const rest = scenarioDurationSeconds(scenario) - scenario.rampSeconds;
  return [
    { duration: `${scenario.rampSeconds}s`, target: scenario.viewers },
    { duration: `${rest}s`, target: scenario.viewers },
  ];
}

/**
 * The k6 options of a scenario: viewers as ramping VUs (up to N over the ramp, then N), the SLO
 * thresholds, the percentiles the summary prints. `gracefulStopSeconds`: how long a VU may finish its
 * session after the end.
 */
export function k6Options(scenario: Scenario, gracefulStopSeconds = 30) {
  return {
    scenarios: {
      viewers: {
        executor: 'ramping-vus' as const,
        startVUs: 0,
        stages: k6Stages(scenario),
        gracefulRampDown: '0s',
        gracefulStop: `${gracefulStopSeconds}s`,
      },
    },
    thresholds: k6Thresholds(scenario),
    summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  };
}

function sloThresholds(slo: ViewerSlo, tag = ''): Record<string, string[]> {
  return {
    [`${METRIC.timeToSnapshot}${tag}`]: [`p(99)<${slo.timeToSnapshotP99Ms}`],
    [`${METRIC.deliveryLatency}${tag}`]: [`p(99)<${slo.deliveryLatencyP99Ms}`],
    [`${METRIC.sessionFailed}${tag}`]: [`rate<=${slo.maxSessionFailureRate}`],
  };
}

/** k6 thresholds (they fail the run) for a scenario; the harness checks the same numbers. */
export function k6Thresholds(scenario: Scenario): Record<string, string[]> {
  switch (scenario.kind) {
    case 'race-start':
      return sloThresholds(scenario.slo);
    case 'reconnect-storm':
      return { ...sloThresholds(scenario.slo), ...sloThresholds(scenario.reconnectSlo, '{phase:reconnect}') };
    case 'token-refresh-soak':
      return {
        ...sloThresholds(scenario.slo),
        [METRIC.unauthenticatedCloses]: [`count<=${scenario.maxUnauthenticatedCloses}`],
        [METRIC.tokenRefreshFailed]: ['rate==0'],
      };
  }
}
