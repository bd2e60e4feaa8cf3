import { describe, expect, it } from 'vitest';
import { stepSchedule, stepUp, verdictOf, type StepOutcome, type StepRules } from '../src/suites/fanout/stepping.js';

// The fanout suite's stepping: which step counts as served, and that stepping stops at the first
// one that is not (and only there).

const rules: StepRules = { windowMs: 100, latencyBudgetMs: 150, minDelivered: 0.99 };

function outcome(viewers: number, over: Partial<StepOutcome> = {}): StepOutcome {
  return { viewers, offeredFrames: 10_000, deliveredFrames: 10_000, p99Ms: 180, failedViewers: 0, lostViewers: 0, ...over };
}

describe('verdictOf', () => {
  it('serves a step with every frame delivered within window + budget', () => {
    expect(verdictOf(outcome(100), rules)).toBe('served');
    expect(verdictOf(outcome(100, { p99Ms: 250 }), rules)).toBe('served');
    expect(verdictOf(outcome(100, { deliveredFrames: 9_900 }), rules)).toBe('served');
  });

  it('fails a step whose p99 exceeds window + budget, or was not measured', () => {
    expect(verdictOf(outcome(100, { p99Ms: 251 }), rules)).toBe('late');
    expect(verdictOf(outcome(100, { p99Ms: Number.NaN }), rules)).toBe('late');
  });

  it('fails a step that delivered less than 99% of what was offered', () => {
    expect(verdictOf(outcome(100, { deliveredFrames: 9_899 }), rules)).toBe('frames lost');
  });

  it('fails a step where viewers could not subscribe or dropped, before looking at frames', () => {
    expect(verdictOf(outcome(100, { failedViewers: 1, deliveredFrames: 0 }), rules)).toBe('viewers failed');
    expect(verdictOf(outcome(100, { lostViewers: 1 }), rules)).toBe('viewers failed');
  });

  it('refuses a step that counted more frames than were offered, or where nothing was offered', () => {
    expect(verdictOf(outcome(100, { deliveredFrames: 10_001 }), rules)).toBe('counted more than offered');
    expect(verdictOf(outcome(100, { offeredFrames: 0, deliveredFrames: 0 }), rules)).toBe('nothing offered');
  });
});

describe('stepSchedule', () => {
  it('grows geometrically in multiples of the event count, up to the maximum', () => {
    expect(stepSchedule(1_000, 2, 10_000, 20)).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(stepSchedule(95, 1.5, 400, 20)).toEqual([100, 160, 240, 360]);
    for (const [a, b] of stepSchedule(30, 1.01, 2_000, 20).map((v, i, all) => [v, all[i + 1] ?? Infinity]))
      expect(b).toBeGreaterThan(a ?? 0);
  });
});

describe('stepUp', () => {
  it('stops at the first step not served and reports the last served one', async () => {
    const measured: number[] = [];
    const result = await stepUp(
      [100, 200, 400, 800],
      (viewers) => {
        measured.push(viewers);
        return Promise.resolve(outcome(viewers, viewers >= 400 ? { p99Ms: 900 } : {}));
      },
      rules,
    );
    expect(measured).toEqual([100, 200, 400]);
    expect(result.served?.viewers).toBe(200);
    expect(result.stoppedBy).toBe('late');
    expect(result.steps.map((s) => s.verdict)).toEqual(['served', 'served', 'late']);
  });

  it('says so when the server kept up with the whole schedule', async () => {
    const result = await stepUp([100, 200], (viewers) => Promise.resolve(outcome(viewers)), rules);
    expect(result.stoppedBy).toBe('schedule exhausted');
    expect(result.served?.viewers).toBe(200);
  });

  it('has no served step when the first one fails', async () => {
    const result = await stepUp([100, 200], (viewers) => Promise.resolve(outcome(viewers, { deliveredFrames: 10 })), rules);
    expect(result.served).toBeUndefined();
    expect(result.stoppedBy).toBe('frames lost');
    expect(result.steps).toHaveLength(1);
  });
});
