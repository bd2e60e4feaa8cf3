// Stepping the offered load up until a server no longer keeps up: the schedule of viewer counts,
// the rule that says whether a step was served, and the loop that stops at the first step that was
// not. Pure: the fanout suite gives it a function that measures one step.

export interface StepRules {
  /** The server's batch window: a position may wait this long before its frame is sent. */
  windowMs: number;
  /** Delivery p99 may exceed the window by this much at most. */
  latencyBudgetMs: number;
  /** Share of the offered frames that must arrive. */
  minDelivered: number;
}

export const STEP_RULES: Omit<StepRules, 'windowMs'> = { latencyBudgetMs: 150, minDelivered: 0.99 };

/** What a step measured, as far as the rules need it. */
export interface StepOutcome {
  viewers: number;
  /** Frames the server published times the viewers subscribed to each (every viewer stays for the whole step). */
  offeredFrames: number;
  /** Frames the viewers counted. */
  deliveredFrames: number;
  /** Delivery latency p99 (rx -> viewer), ms; NaN when nothing was sampled. */
  p99Ms: number;
  /** Viewers that could not connect and subscribe, and subscribed viewers whose connection ended during the step. */
  failedViewers: number;
  lostViewers: number;
}

export type Verdict = 'served' | 'late' | 'frames lost' | 'viewers failed' | 'nothing offered' | 'counted more than offered';

export function verdictOf(step: StepOutcome, rules: StepRules): Verdict {
  if (step.failedViewers > 0 || step.lostViewers > 0) return 'viewers failed';
  if (step.offeredFrames <= 0) return 'nothing offered';
  // A viewer counts a frame once; more than offered means the counting is wrong, not the server.
  if (step.deliveredFrames > step.offeredFrames) return 'counted more than offered';
  if (step.deliveredFrames < rules.minDelivered * step.offeredFrames) return 'frames lost';
  if (!(step.p99Ms <= rules.windowMs + rules.latencyBudgetMs)) return 'late';
  return 'served';
}

/**
 * Viewer counts from `first`, each `growth` times the last, rounded to a multiple of `multipleOf`
 * (so that every event has as many viewers), up to `max`.
 */
export function stepSchedule(first: number, growth: number, max: number, multipleOf: number): number[] {
  if (growth <= 1) throw new Error('growth must be above 1');
  const round = (n: number) => Math.max(multipleOf, Math.round(n / multipleOf) * multipleOf);
  const steps: number[] = [];
  for (let viewers = round(first); viewers <= max; viewers = round(Math.max(viewers * growth, viewers + multipleOf))) steps.push(viewers);
  return steps;
}

export interface Stepped<T extends StepOutcome> {
  /** Every step measured, in order (refinements included). */
  steps: (T & { verdict: Verdict })[];
  /** The highest step served, if any. */
  served: (T & { verdict: Verdict }) | undefined;
  /** The lowest step not served above it, if any. */
  failed: (T & { verdict: Verdict }) | undefined;
  /** Why stepping stopped: the verdict of the lowest step not served, or `schedule exhausted` (the server kept up with all of it). */
  stoppedBy: Exclude<Verdict, 'served'> | 'schedule exhausted';
}

export interface StepUpOptions<T extends StepOutcome> {
  /** Steps measured between the highest served and the lowest failed step after the schedule stopped, halving the gap each time. */
  refine?: number;
  /** Viewer counts are rounded to a multiple of this (as the schedule's are). */
  multipleOf?: number;
  onStep?: (step: T & { verdict: Verdict }) => void;
}

/**
 * Measures the steps in order and stops at the first that is not served; then, `refine` times,
 * measures halfway between the highest step served and the lowest not served. A step that counted
 * more than offered ends everything at once: the bench itself is wrong.
 */
export async function stepUp<T extends StepOutcome>(
  schedule: readonly number[],
  measure: (viewers: number) => Promise<T>,
  rules: StepRules,
  { refine = 0, multipleOf = 1, onStep = () => undefined }: StepUpOptions<T> = {},
): Promise<Stepped<T>> {
  const steps: (T & { verdict: Verdict })[] = [];
  let served: (T & { verdict: Verdict }) | undefined;
  let failed: (T & { verdict: Verdict }) | undefined;
  const run = async (viewers: number) => {
    const outcome = await measure(viewers);
    const step = { ...outcome, verdict: verdictOf(outcome, rules) };
    steps.push(step);
    onStep(step);
    if (step.verdict === 'served') {
      if (served === undefined || step.viewers > served.viewers) served = step;
    } else if (failed === undefined || step.viewers < failed.viewers) {
      failed = step;
    }
    return step;
  };
  for (const viewers of schedule) {
    if ((await run(viewers)).verdict !== 'served') break;
  }
  for (let i = 0; i < refine && served !== undefined && failed !== undefined; i++) {
    if (failed.verdict === 'counted more than offered') break;
    const mid = Math.round((served.viewers + failed.viewers) / 2 / multipleOf) * multipleOf;
    if (mid <= served.viewers || mid >= failed.viewers) break;
    await run(mid);
  }
  return { steps, served, failed, stoppedBy: failed === undefined ? 'schedule exhausted' : (failed.verdict as Exclude<Verdict, 'served'>) };
}
