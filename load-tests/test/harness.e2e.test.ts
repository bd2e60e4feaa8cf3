import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { callsBetween } from '@pitwall/business-plane';
import { REPO_ROOT, sharedRedisUrl, waitFor } from '@pitwall/testkit';
import { startLocalRace, type LocalRace } from '../src/local/local-race.js';
import { runScenario } from '../src/run-scenario.js';
import { METRIC, SMOKE_RACE_START, SMOKE_RECONNECT_STORM, SMOKE_TOKEN_REFRESH_SOAK } from '../src/scenarios.js';

// The Node harness end to end on the real stack, scaled down: a Directus of its own (access tokens
// live 10 s, so that the soak refreshes), ingestion, writer and live gateway from their builds, six
// simulated devices in two events, a dozen viewers in two worker processes. Proves that the harness
// measures what it claims; the figures themselves belong to `make bench`.

const TOKEN_TTL = '10s';
let race: LocalRace;

beforeAll(async () => {
  const logDir = join(REPO_ROOT, 'test-results', 'e2e', 'load-tests');
  mkdirSync(logDir, { recursive: true });
  race = await startLocalRace({
    race: SMOKE_RACE_START.race,
    viewerAccounts: 4,
    servers: { redisUrl: sharedRedisUrl(), postgresAdminUrl: inject('postgresUrl') },
    accessTokenTtl: TOKEN_TTL,
    logDir,
  });
  // Every device has reported, so every snapshot has positions in it.
  await waitFor('every simulated device acknowledged', () => race.simulation.stats().acked >= SMOKE_RACE_START.race.devices * 2, {
    timeoutMs: 30_000,
  });
});

afterAll(async () => {
  await race?.stop();
});

describe('the load harness on the real stack', () => {
  it('runs the race start: every viewer gets its snapshot and timed positions, authorized from its token with no Directus call', async () => {
    const before = race.directusCalls.snapshot();
    const sessions = await race.freshSessions();
    const report = await runScenario(SMOKE_RACE_START.scenario, race.target, sessions, { workers: 2 });
    const calls = callsBetween(before, race.directusCalls.snapshot());
    const { stats } = report;
    const viewers = SMOKE_RACE_START.scenario.viewers;

    expect(stats.failures).toEqual({});
    expect(stats.all).toMatchObject({ sessions: viewers, snapshots: viewers, failedSessions: 0 });
    expect(stats.all.timeToOpen.count).toBe(viewers);
    expect(stats.all.timeToSnapshot.count).toBe(viewers);
    // Positions flowed for the whole hold, each with an rx the latency was measured from.
    expect(stats.positionsParsed).toBeGreaterThan(viewers);
    expect(stats.all.deliveryLatency.count).toBe(stats.positionsParsed);
    expect(stats.all.deliveryLatency.max).toBeLessThan(60_000);
    expect(report.verdicts.map((v) => v.name)).toEqual([
      'p99 time to snapshot (ms)',
      'p99 delivery latency (ms)',
      'failed sessions (rate)',
    ]);
    expect(report.verdicts.find((v) => v.name === 'failed sessions (rate)')?.ok).toBe(true);
    // Every account's token lists the race's events (pitwall_events): the gateway authorizes each
    // subscription from the token, with no Directus call (before issue 16: one per (user, event)).
    expect(calls.authorize).toBe(0);
    expect(calls.verify).toBe(0); // the gateway verifies tokens locally (DIRECTUS_SECRET)
  });

  it('runs the reconnect storm: every viewer drops at the same moment and returns with a new snapshot', async () => {
    const report = await runScenario(SMOKE_RECONNECT_STORM, race.target, await race.freshSessions(), { workers: 2 });
    const { initial, reconnect } = report.stats.phases;
    const viewers = SMOKE_RECONNECT_STORM.viewers;
    expect(report.stats.failures).toEqual({});
    expect(initial).toMatchObject({ sessions: viewers, snapshots: viewers, failedSessions: 0 });
    expect(reconnect).toMatchObject({ sessions: viewers, snapshots: viewers, failedSessions: 0 });
    expect(reconnect.timeToSnapshot.count).toBe(viewers);
    expect(report.verdicts.filter((v) => v.name.startsWith('reconnect: '))).toHaveLength(3);
    // The drop was the viewers' own: the server closed nothing.
    expect(report.stats.serverCloses).toEqual({});
  });

  it('runs the token-refresh soak: tokens are refreshed at Directus and sent on the open socket, nothing closes with 4401', async () => {
    const report = await runScenario(SMOKE_TOKEN_REFRESH_SOAK, race.target, await race.freshSessions(), { workers: 1 });
    const { stats } = report;
    expect(stats.failures).toEqual({});
    expect(stats.refreshesFailed).toBe(0);
    expect(stats.refreshesOk).toBeGreaterThanOrEqual(SMOKE_TOKEN_REFRESH_SOAK.viewers);
    expect(stats.unauthenticatedCloses).toBe(0);
    expect(stats.errors).toEqual({});
    expect(stats.all).toMatchObject({ sessions: SMOKE_TOKEN_REFRESH_SOAK.viewers, failedSessions: 0 });
    expect(report.verdicts.find((v) => v.name === 'closes with 4401')).toMatchObject({ value: 0, ok: true });
    expect(METRIC.unauthenticatedCloses).toBe('pitwall_viewer_closes_4401');
  });

  it('leaves no acknowledged position missing from PostgreSQL', async () => {
    const { drained, check } = await race.drainAndCheckStored(60_000);
    expect(drained).toBe(true);
    expect(check.acked).toBeGreaterThan(0);
    expect(check).toMatchObject({ missing: 0, duplicated: 0 });
  });
});
