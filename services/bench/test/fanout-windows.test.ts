import { describe, expect, it } from 'vitest';
import { STEP_RULES, verdictOf, type StepOutcome } from '../src/suites/fanout/stepping.js';
import { frameShape, MIN_WINDOWS_PER_STEP, stepMsAt } from '../src/suites/fanout/windows.js';
import { meanMs } from '../src/suites/live-gateway/protocol.js';

// The fanout-window sweep: the feed at each window, how long a step runs, and the latency budget
// that moves with the window.

describe('frameShape', () => {
  it('keeps the positions per second: a larger window, fewer and bigger frames', () => {
    expect(frameShape(100)).toEqual({ framesPerSecond: 10, positionsPerFrame: 6 });
    expect(frameShape(250)).toEqual({ framesPerSecond: 4, positionsPerFrame: 15 });
    expect(frameShape(500)).toEqual({ framesPerSecond: 2, positionsPerFrame: 30 });
    expect(() => frameShape(0)).toThrow();
  });
});

describe('stepMsAt', () => {
  it('runs a step for the suite step or enough windows, whichever is longer', () => {
    expect(stepMsAt(100, 3_000)).toBe(3_000);
    expect(stepMsAt(500, 3_000)).toBe(MIN_WINDOWS_PER_STEP * 500);
    expect(stepMsAt(500, 8_000)).toBe(8_000);
  });
});

describe('the latency budget at a window', () => {
  const step: StepOutcome = { viewers: 100, offeredFrames: 1_000, deliveredFrames: 1_000, p99Ms: 0, failedViewers: 0, lostViewers: 0 };

  it('is the window + 150 ms: a p99 late at 100 ms is served at 500 ms', () => {
    expect(verdictOf({ ...step, p99Ms: 600 }, { windowMs: 100, ...STEP_RULES })).toBe('late');
    expect(verdictOf({ ...step, p99Ms: 650 }, { windowMs: 500, ...STEP_RULES })).toBe('served');
    expect(verdictOf({ ...step, p99Ms: 651 }, { windowMs: 500, ...STEP_RULES })).toBe('late');
  });
});

describe('meanMs', () => {
  it('averages latency histograms of 1 ms buckets, merged', () => {
    expect(meanMs([[0, 2, 0, 1]])).toBe((2 * 1 + 3) / 3);
    expect(
      meanMs([
        [0, 1],
        [0, 0, 0, 1],
      ]),
    ).toBe(2);
    expect(meanMs([[0, 0]])).toBeNaN();
  });
});
