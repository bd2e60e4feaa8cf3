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
  /** A server that serves up to `capacity` viewers; records what was measured. */
  function server(capacity: number) {
    const measured: number[] = [];
    const measure = (viewers: number) => {
      measured.push(viewers);
      return Promise.resolve(outcome(viewers, viewers > capacity ? { p99Ms: 900 } : {}));
    };
    return { measured, measure };
  }

  it('stops at the first step not served and reports the last served one', async () => {
    const { measured, measure } = server(300);
    const result = await stepUp([100, 200, 400, 800], measure, rules);
    expect(measured).toEqual([100, 200, 400]);
    expect(result.served?.viewers).toBe(200);
    expect(result.failed?.viewers).toBe(400);
    expect(result.stoppedBy).toBe('late');
    expect(result.steps.map((s) => s.verdict)).toEqual(['served', 'served', 'late']);
  });

  it('then halves the gap between the highest served and the lowest failed step, as often as asked', async () => {
    const { measured, measure } = server(330);
    const result = await stepUp([100, 200, 400, 800], measure, rules, { refine: 3, multipleOf: 10 });
    // 300 served, 350 failed, 330 served (325 rounds to 330 at multiples of 10).
    expect(measured).toEqual([100, 200, 400, 300, 350, 330]);
    expect(result.served?.viewers).toBe(330);
    expect(result.failed?.viewers).toBe(350);
    expect(result.stoppedBy).toBe('late');
  });

  it('stops refining when the gap cannot be halved at the given multiple', async () => {
    const { measured, measure } = server(100);
    await stepUp([100, 120], measure, rules, { refine: 5, multipleOf: 20 });
    expect(measured).toEqual([100, 120]);
  });

  it('does not refine past a step that counted more than offered', async () => {
    const measured: number[] = [];
    await stepUp(
      [100, 200],
      (viewers) => {
        measured.push(viewers);
        return Promise.resolve(outcome(viewers, viewers > 100 ? { deliveredFrames: 20_000 } : {}));
      },
      rules,
      { refine: 3, multipleOf: 10 },
    );
    expect(measured).toEqual([100, 200]);
  });

  it('says so when the server kept up with the whole schedule', async () => {
    const result = await stepUp([100, 200], server(1_000).measure, rules, { refine: 2 });
    expect(result.stoppedBy).toBe('schedule exhausted');
    expect(result.served?.viewers).toBe(200);
    expect(result.failed).toBeUndefined();
  });

  it('has no served step when the first one fails, and nothing to refine', async () => {
    const result = await stepUp([100, 200], (viewers) => Promise.resolve(outcome(viewers, { deliveredFrames: 10 })), rules, { refine: 2 });
    expect(result.served).toBeUndefined();
    expect(result.stoppedBy).toBe('frames lost');
    expect(result.steps).toHaveLength(1);
  });
});
