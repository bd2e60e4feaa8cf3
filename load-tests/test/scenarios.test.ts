import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  LOCAL_RACE_START,
  METRIC,
  SCENARIOS,
  SMOKE_RECONNECT_STORM,
  connectAtSeconds,
  eventForViewer,
  k6Options,
  k6Stages,
  k6Thresholds,
  scenarioDurationSeconds,
  stormAtSeconds,
} from '../src/scenarios.js';
import { planViewers } from '../src/run-scenario.js';

describe('the shared scenario definitions', () => {
  it('import no values (type-only imports are erased), so that k6 and Node can both load them', () => {
    for (const file of ['scenarios.ts', 'protocol.ts']) {
      const source = readFileSync(join(import.meta.dirname, '..', 'src', file), 'utf8');
      expect(source, file).not.toMatch(/^\s*import\s+(?!type\s)/m);
      expect(source, file).not.toMatch(/^\s*export\s+(?!type\s)[^;]*\bfrom\s/m);
      expect(source, file).not.toMatch(/\brequire\(|\bprocess\.|\bBuffer\b/);
    }
  });

  it('turn each SLO into k6 thresholds on the shared metric names', () => {
    const race = SCENARIOS.raceStart;
    expect(k6Thresholds(race)).toEqual({
      [METRIC.timeToSnapshot]: [`p(99)<${race.slo.timeToSnapshotP99Ms}`],
      [METRIC.deliveryLatency]: [`p(99)<${race.slo.deliveryLatencyP99Ms}`],
      [METRIC.sessionFailed]: [`rate<=${race.slo.maxSessionFailureRate}`],
    });
    const storm = k6Thresholds(SCENARIOS.reconnectStorm);
    expect(storm[`${METRIC.timeToSnapshot}{phase:reconnect}`]).toEqual([
      `p(99)<${SCENARIOS.reconnectStorm.reconnectSlo.timeToSnapshotP99Ms}`,
    ]);
    const soak = k6Thresholds(SCENARIOS.tokenRefreshSoak);
    expect(soak[METRIC.unauthenticatedCloses]).toEqual(['count<=0']);
    expect(soak[METRIC.tokenRefreshFailed]).toEqual(['rate==0']);
  });

  it('ramp to N within the ramp and hold N until the end of the scenario', () => {
    for (const scenario of Object.values(SCENARIOS)) {
      const stages = k6Stages(scenario);
      expect(stages.map((s) => s.target)).toEqual([scenario.viewers, scenario.viewers]);
      const seconds = stages.reduce((sum, s) => sum + Number(s.duration.replace('s', '')), 0);
      expect(seconds).toBe(scenarioDurationSeconds(scenario));
      expect(stages[0]?.duration).toBe(`${scenario.rampSeconds}s`);
    }
  });

  it('give k6 ramping VUs with the stages, the thresholds and the grace to finish a session', () => {
    const options = k6Options(SCENARIOS.tokenRefreshSoak, 60);
    expect(options.scenarios.viewers).toMatchObject({ executor: 'ramping-vus', startVUs: 0, gracefulStop: '60s' });
    expect(options.scenarios.viewers.stages).toEqual(k6Stages(SCENARIOS.tokenRefreshSoak));
    expect(options.thresholds).toEqual(k6Thresholds(SCENARIOS.tokenRefreshSoak));
    expect(k6Options(SCENARIOS.raceStart).scenarios.viewers.gracefulStop).toBe('30s');
  });

  it('give the local race start the figures of the issue: 2,000 devices at 1 Hz, 5,000 viewers within 30 s', () => {
    expect(LOCAL_RACE_START.race).toMatchObject({ devices: 2_000, positionHz: 1 });
    expect(LOCAL_RACE_START.scenario).toMatchObject({ viewers: 5_000, rampSeconds: 30 });
  });

  it('spread connections linearly over the ramp and viewers round-robin over events', () => {
    expect(connectAtSeconds(0, 100, 30)).toBe(0);
    expect(connectAtSeconds(50, 100, 30)).toBe(15);
    expect(connectAtSeconds(99, 100, 30)).toBeLessThan(30);
    expect([0, 1, 2, 3, 4].map((i) => eventForViewer(i, [7, 8]))).toEqual([7, 8, 7, 8, 7]);
    expect(() => eventForViewer(0, [])).toThrow(/no event ids/);
  });

  it('plan a reconnect storm: every viewer drops at the same moment and returns within the window', () => {
    const storm = { ...SCENARIOS.reconnectStorm, viewers: 200 };
    const start = 1_000_000;
    const plans = planViewers(
      storm,
      { gatewayUrl: 'ws://x/live', directusUrl: 'http://x', eventIds: [1, 2, 3] },
      [{ accessToken: 'a' }],
      start,
    );
    expect(plans).toHaveLength(200);
    const dropAt = start + stormAtSeconds(storm) * 1000;
    for (const plan of plans) {
      expect(plan.dropAtMs).toBe(dropAt);
      expect(plan.returnAtMs).toBeGreaterThanOrEqual(dropAt);
      expect(plan.returnAtMs).toBeLessThanOrEqual(dropAt + storm.reconnectWindowSeconds * 1000);
      expect(plan.connectAtMs).toBeLessThan(start + storm.rampSeconds * 1000);
      expect(plan.untilMs).toBe(start + scenarioDurationSeconds(storm) * 1000);
    }
    expect(new Set(plans.map((p) => p.eventId))).toEqual(new Set([1, 2, 3]));
  });

  it('leave the returning viewers of a storm time for their snapshot after the window closes', () => {
    for (const storm of [SCENARIOS.reconnectStorm, SMOKE_RECONNECT_STORM]) {
      expect(storm.holdSeconds).toBeGreaterThanOrEqual(storm.reconnectWindowSeconds + 3);
    }
  });
});
