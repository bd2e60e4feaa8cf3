import { readFileSync, writeFileSync } from 'node:fs';
import type { RaceStartRun } from './report.js';

// run.json: what docs/race-start.md and its 10x projection are rendered from, saved next to the run's
// logs so that the report can be rendered again (render-race-start) without a 12-minute run. JSON has
// no NaN or Infinity, and the run has both (a phase not measured, a quantile beyond the largest
// bucket): they are written as the strings "NaN", "Infinity", "-Infinity" and read back as numbers.

/** Bumped when RaceStartRun changes shape: an older file is refused rather than rendered wrongly. */
export const RUN_FILE_FORMAT = 1;

export interface RunFile {
  format: number;
  /** A quick run (QUICK=1): its report goes next to the logs, not to docs/. */
  quick: boolean;
  run: RaceStartRun;
}

const NON_FINITE: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  '-Infinity': Number.NEGATIVE_INFINITY,
};

export function writeRunFile(file: string, content: Omit<RunFile, 'format'>): void {
  const body: RunFile = { format: RUN_FILE_FORMAT, ...content };
  writeFileSync(
    file,
    `${JSON.stringify(body, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value), 2)}\n`,
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasMeasuredRun(value: unknown): boolean {
  if (!isRecord(value) || !Array.isArray(value.cpuRamp) || !Array.isArray(value.cpuHold) || !isRecord(value.counters)) return false;
  const report = value.report;
  return isRecord(report) && Array.isArray(report.verdicts) && isRecord(report.stats) && isRecord(report.stats.all);
}

/** The checks a file written by writeRunFile passes (its format and the structure the report walks). */
function isRunFile(value: unknown): value is RunFile {
  if (!isRecord(value) || value.format !== RUN_FILE_FORMAT || typeof value.quick !== 'boolean' || !isRecord(value.run)) return false;
  const run = value.run;
  return (
    isRecord(run.machine) &&
    isRecord(run.race) &&
    Array.isArray(run.cpuDevicesOnly) &&
    typeof run.devicesOnlyPositionsPerSecond === 'number' &&
    isRecord(run.runs) &&
    hasMeasuredRun(run.runs.distinct) &&
    hasMeasuredRun(run.runs.cached) &&
    Array.isArray(run.profiles)
  );
}

export function readRunFile(file: string): RunFile {
  const value: unknown = JSON.parse(readFileSync(file, 'utf8'), (_key, raw: unknown) =>
    typeof raw === 'string' && Object.hasOwn(NON_FINITE, raw) ? NON_FINITE[raw] : raw,
  );
  if (!isRunFile(value)) throw new Error(`${file} is not a race-start run file of format ${RUN_FILE_FORMAT}`);
  return value;
}
