import { join } from 'node:path';
import { REPO_ROOT } from '@pitwall/testkit';

/** The suite's logs, profiles and figures (run.json); emptied at the start of each run. */
export const RACE_START_DIR = join(REPO_ROOT, '.pitwall', 'bench', 'race-start');

export function raceStartRunFile(): string {
  return join(RACE_START_DIR, 'run.json');
}

/** A quick look goes next to the logs; a full run is the analysis in docs/. */
export function raceStartReportFile(quick: boolean): string {
  return quick ? join(RACE_START_DIR, 'race-start.md') : join(REPO_ROOT, 'docs', 'race-start.md');
}
