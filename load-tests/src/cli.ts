import { readFileSync } from 'node:fs';
import { loginViewer } from './directus/directus-auth.js';
import { runScenario, type HarnessSession } from './run-scenario.js';
import { SCENARIOS, type Scenario, type ViewerSlo } from './scenarios.js';

// The Node harness against a running stack (e.g. `make up`), configured by the same variables as the
// k6 scripts, exiting 1 when a threshold is missed (as k6 does):
//
//   GATEWAY_URL=ws://127.0.0.1:8080/live DIRECTUS_URL=http://127.0.0.1:8055 EVENT_IDS=1,2,3 \
//   VIEWER_EMAIL=viewer-all@pitwall.example.com VIEWER_PASSWORD=pitwall-demo VIEWERS=200 \
//   node load-tests/dist/cli.js race-start            # or reconnect-storm, token-refresh-soak

const env = process.env;

function text(name: string, fallback?: string): string {
  const value = env[name]?.trim();
  if (value) return value;
  if (fallback !== undefined) return fallback;
  throw new Error(`${name} is required`);
}

function num(name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got ${raw}`);
  return value;
}

function slo(base: ViewerSlo, prefix = 'SLO'): ViewerSlo {
  return {
    timeToSnapshotP99Ms: num(`${prefix}_SNAPSHOT_P99_MS`, base.timeToSnapshotP99Ms),
    deliveryLatencyP99Ms: num(`${prefix}_LATENCY_P99_MS`, base.deliveryLatencyP99Ms),
    maxSessionFailureRate: num(`${prefix}_MAX_FAILURE_RATE`, base.maxSessionFailureRate),
  };
}

function scenarioFromEnv(name: string): Scenario {
  const base =
    name === 'race-start'
      ? SCENARIOS.raceStart
      : name === 'reconnect-storm'
        ? SCENARIOS.reconnectStorm
        : name === 'token-refresh-soak'
          ? SCENARIOS.tokenRefreshSoak
          : undefined;
  if (!base) throw new Error(`unknown scenario ${name} (race-start, reconnect-storm, token-refresh-soak)`);
  const common = {
    viewers: num('VIEWERS', base.viewers),
    rampSeconds: num('RAMP_SECONDS', base.rampSeconds),
    holdSeconds: num('HOLD_SECONDS', base.holdSeconds),
    snapshotTimeoutSeconds: num('SNAPSHOT_TIMEOUT_SECONDS', base.snapshotTimeoutSeconds),
    slo: slo(base.slo),
  };
  switch (base.kind) {
    case 'race-start':
      return { ...base, ...common };
    case 'reconnect-storm':
      return {
        ...base,
        ...common,
        settleSeconds: num('SETTLE_SECONDS', base.settleSeconds),
        reconnectWindowSeconds: num('RECONNECT_WINDOW_SECONDS', base.reconnectWindowSeconds),
        reconnectSlo: slo(base.reconnectSlo, 'SLO_RECONNECT'),
      };
    case 'token-refresh-soak':
      return {
        ...base,
        ...common,
        refreshLeadSeconds: num('REFRESH_LEAD_SECONDS', base.refreshLeadSeconds),
        maxUnauthenticatedCloses: num('MAX_4401_CLOSES', base.maxUnauthenticatedCloses),
      };
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function sessionsFromEnv(directusUrl: string, viewers: number): Promise<HarnessSession[]> {
  const file = env.TOKENS_FILE?.trim();
  if (file) {
    const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (!Array.isArray(value)) throw new Error('TOKENS_FILE must hold a JSON array');
    return value.map((item, i): HarnessSession => {
      if (typeof item === 'string') return { accessToken: item };
      if (isRecord(item) && typeof item.access_token === 'string') {
        return { accessToken: item.access_token, refreshToken: typeof item.refresh_token === 'string' ? item.refresh_token : undefined };
      }
      throw new Error(`TOKENS_FILE entry ${i} is neither a token nor {access_token, refresh_token}`);
    });
  }
  const tokens = env.TOKENS?.trim();
  if (tokens) return tokens.split(',').flatMap((t) => (t.trim() ? [{ accessToken: t.trim() }] : []));
  const template = text('VIEWER_EMAIL');
  const password = text('VIEWER_PASSWORD');
  const users = Math.max(1, Math.min(viewers, Math.floor(num('VIEWER_USERS', 1))));
  const sessions: HarnessSession[] = [];
  for (let n = 1; n <= users; n++) sessions.push(await loginViewer(directusUrl, template.replace('{n}', String(n)), password));
  return sessions;
}

async function main(): Promise<void> {
  const scenario = scenarioFromEnv(process.argv[2] ?? 'race-start');
  const directusUrl = text('DIRECTUS_URL', 'http://127.0.0.1:8055').replace(/\/+$/, '');
  const target = {
    gatewayUrl: text('GATEWAY_URL', 'ws://127.0.0.1:8080/live'),
    directusUrl,
    eventIds: text('EVENT_IDS', '1')
      .split(',')
      .map((id) => Number(id.trim())),
  };
  const sessions = await sessionsFromEnv(directusUrl, scenario.viewers);
  process.stdout.write(
    `${scenario.kind}: ${scenario.viewers} viewers over ${sessions.length} sessions, events ${target.eventIds.join(',')}\n`,
  );
  const report = await runScenario(scenario, target, sessions, {
    workers: env.WORKERS ? num('WORKERS', 2) : undefined,
    parseEvery: num('PARSE_EVERY', 1),
    log: (line) => process.stdout.write(`  ${line}\n`),
  });
  const all = report.stats.all;
  for (const [name, h] of [
    ['time to open', all.timeToOpen],
    ['time to snapshot', all.timeToSnapshot],
    ['delivery latency', all.deliveryLatency],
  ] as const) {
    const s = h.summary();
    process.stdout.write(
      `${name}: n=${s.count} p50=${s.p50.toFixed(1)} p95=${s.p95.toFixed(1)} p99=${s.p99.toFixed(1)} max=${s.max.toFixed(1)} ms\n`,
    );
  }
  process.stdout.write(`failures: ${JSON.stringify(report.stats.failures)}; errors: ${JSON.stringify(report.stats.errors)}\n`);
  for (const v of report.verdicts) process.stdout.write(`${v.ok ? 'ok  ' : 'FAIL'} ${v.name}: ${v.value} (limit ${v.limit})\n`);
  process.exitCode = report.passed ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
