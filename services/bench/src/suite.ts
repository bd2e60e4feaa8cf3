/**
 * One measured figure beside the baseline it is judged against, both measured in the same run on the
 * same machine. `ratio` is figure / baseline when higher is better, baseline / figure when lower is.
 */
export interface BenchResult {
  /** Suite that measured it, e.g. `ingestion`. */
  suite: string;
  /** What was measured, e.g. `positions/s decoded, appended and acknowledged (1,000 devices)`. */
  figure: string;
  unit: string;
  value: number;
  baseline: { name: string; value: number };
  higherIsBetter: boolean;
  /** The target from the issue, stated as a ratio (e.g. 0.5 for "at least 50% of the ceiling"). */
  targetRatio?: number;
  notes?: string;
}

export interface BenchContext {
  /** Scales workloads down for a quick look (`make bench QUICK=1`). */
  quick: boolean;
  log: (message: string) => void;
}

export interface BenchSuite {
  name: string;
  run(context: BenchContext): Promise<BenchResult[]>;
}

export function ratioOf(result: Pick<BenchResult, 'value' | 'baseline' | 'higherIsBetter'>): number {
  if (result.baseline.value === 0 || result.value === 0) return 0;
  return result.higherIsBetter ? result.value / result.baseline.value : result.baseline.value / result.value;
}
