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
  /** Every step measured, in order; the last is the one that stopped the run unless the schedule ran out. */
  steps: (T & { verdict: Verdict })[];
  /** The highest step served, if any. */
  served: (T & { verdict: Verdict }) | undefined;
  /** Why stepping stopped: the verdict of the last step, or `schedule exhausted` (the server kept up with all of it). */
  stoppedBy: Exclude<Verdict, 'served'> | 'schedule exhausted';
}

/** Measures the steps in order and stops at the first that is not served. */
export async function stepUp<T extends StepOutcome>(
  schedule: readonly number[],
  measure: (viewers: number) => Promise<T>,
  rules: StepRules,
  onStep: (step: T & { verdict: Verdict }) => void = () => undefined,
): Promise<Stepped<T>> {
  const steps: (T & { verdict: Verdict })[] = [];
  let served: (T & { verdict: Verdict }) | undefined;
  for (const viewers of schedule) {
    const outcome = await measure(viewers);
    const step = { ...outcome, verdict: verdictOf(outcome, rules) };
    steps.push(step);
    onStep(step);
    if (step.verdict !== 'served') return { steps, served, stoppedBy: step.verdict };
    served = step;
  }
  return { steps, served, stoppedBy: 'schedule exhausted' };
}
