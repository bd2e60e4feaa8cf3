import type { RaceStartScenario, ReconnectStormScenario, TokenRefreshSoakScenario, ViewerSlo } from '../../src/scenarios.ts';
import { envList, envNumber, envOptional, envString } from './env.ts';

/** Where the run points: the gateway's WebSocket endpoint, Directus, and the events to watch. */
export interface Target {
  /** ws:// or wss:// URL of the gateway's /live endpoint. */
  gatewayUrl: string;
  /** Directus base URL: for logins (unless a token pool is given) and token refreshes. */
  directusUrl: string | undefined;
  eventIds: number[];
}

export function targetFromEnv(): Target {
  const gatewayUrl = envString('GATEWAY_URL');
  if (!/^wss?:\/\//.test(gatewayUrl)) throw new Error(`GATEWAY_URL must be a ws:// or wss:// URL of /live, got ${gatewayUrl}`);
  const eventIds = envList('EVENT_IDS').map((id) => {
    const n = Number(id);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`EVENT_IDS must be positive integers, got ${id}`);
    return n;
  });
  return { gatewayUrl, directusUrl: envOptional('DIRECTUS_URL')?.replace(/\/+$/, ''), eventIds };
}

function sloFromEnv(slo: ViewerSlo, prefix = 'SLO'): ViewerSlo {
  return {
    timeToSnapshotP99Ms: envNumber(`${prefix}_SNAPSHOT_P99_MS`, slo.timeToSnapshotP99Ms),
    deliveryLatencyP99Ms: envNumber(`${prefix}_LATENCY_P99_MS`, slo.deliveryLatencyP99Ms),
    maxSessionFailureRate: envNumber(`${prefix}_MAX_FAILURE_RATE`, slo.maxSessionFailureRate),
  };
}

function commonFromEnv(scenario: RaceStartScenario | ReconnectStormScenario | TokenRefreshSoakScenario) {
  return {
    viewers: envNumber('VIEWERS', scenario.viewers),
    rampSeconds: envNumber('RAMP_SECONDS', scenario.rampSeconds),
    holdSeconds: envNumber('HOLD_SECONDS', scenario.holdSeconds),
    snapshotTimeoutSeconds: envNumber('SNAPSHOT_TIMEOUT_SECONDS', scenario.snapshotTimeoutSeconds),
    slo: sloFromEnv(scenario.slo),
  };
}

/** The shared race-start scenario with the run's overrides (VIEWERS, RAMP_SECONDS, HOLD_SECONDS, SLO_*). */
export function raceStartFromEnv(scenario: RaceStartScenario): RaceStartScenario {
  return { ...scenario, ...commonFromEnv(scenario) };
}

/** ... plus SETTLE_SECONDS, RECONNECT_WINDOW_SECONDS and SLO_RECONNECT_*. */
export function reconnectStormFromEnv(scenario: ReconnectStormScenario): ReconnectStormScenario {
  return {
    ...scenario,
    ...commonFromEnv(scenario),
    settleSeconds: envNumber('SETTLE_SECONDS', scenario.settleSeconds),
    reconnectWindowSeconds: envNumber('RECONNECT_WINDOW_SECONDS', scenario.reconnectWindowSeconds),
    reconnectSlo: sloFromEnv(scenario.reconnectSlo, 'SLO_RECONNECT'),
  };
}

/** ... plus REFRESH_LEAD_SECONDS and MAX_4401_CLOSES. */
export function tokenRefreshSoakFromEnv(scenario: TokenRefreshSoakScenario): TokenRefreshSoakScenario {
  return {
    ...scenario,
    ...commonFromEnv(scenario),
    refreshLeadSeconds: envNumber('REFRESH_LEAD_SECONDS', scenario.refreshLeadSeconds),
    maxUnauthenticatedCloses: envNumber('MAX_4401_CLOSES', scenario.maxUnauthenticatedCloses),
  };
}
