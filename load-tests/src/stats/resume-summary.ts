import type { ResumeViewerResult } from '../viewers/plan.js';
import { Histogram } from './histogram.js';
import { ResumeResultsError } from './resume-results-error.js';

// The reconnect storm's viewers, checked and merged: each viewer once (a result missing or reported
// twice is the bench's own fault, not the gateway's), the first snapshot and the first resume timed.

export interface ResumeSummary {
  /** New connection to the first snapshot, every viewer that got one. */
  firstSnapshot: Histogram;
  /** New connection to the first resume's reply, every viewer that resumed. */
  resumed: Histogram;
  /** Viewers whose only resume was answered `recovered: true`: every viewer, in a storm that went right. */
  recoveredOnce: number;
  /** Viewers that resumed but whose first resume was not recovered. */
  notRecovered: number;
  /** Viewers that resumed more than once (their first resume is the one timed). */
  resumedMoreThanOnce: number;
  /** Viewers that did not resume at all. */
  notResumed: number;
}

/** Merges the workers' results for the viewers `ids`; throws when a viewer is missing or reported twice. */
export function summarizeResumes(ids: readonly number[], results: readonly ResumeViewerResult[]): ResumeSummary {
  const byId = new Map<number, ResumeViewerResult>();
  const duplicated = new Set<number>();
  for (const result of results) {
    if (byId.has(result.id)) duplicated.add(result.id);
    byId.set(result.id, result);
  }
  const expected = new Set(ids);
  const missing = ids.filter((id) => !byId.has(id));
  const unexpected = [...byId.keys()].filter((id) => !expected.has(id));
  if (duplicated.size > 0 || missing.length > 0 || unexpected.length > 0 || expected.size !== ids.length) {
    throw new ResumeResultsError(
      `viewer results: ${duplicated.size} reported twice, ${missing.length} missing, ${unexpected.length} unknown, ` +
        `${ids.length - expected.size} ids planned twice (of ${ids.length})`,
    );
  }
  const summary: ResumeSummary = {
    firstSnapshot: new Histogram(),
    resumed: new Histogram(),
    recoveredOnce: 0,
    notRecovered: 0,
    resumedMoreThanOnce: 0,
    notResumed: 0,
  };
  for (const result of byId.values()) {
    if (result.firstSubscribedMs !== undefined) summary.firstSnapshot.record(result.firstSubscribedMs);
    if (result.resumes === 0 || result.resumedMs === undefined) {
      summary.notResumed++;
      continue;
    }
    summary.resumed.record(result.resumedMs);
    if (result.resumes > 1) summary.resumedMoreThanOnce++;
    if (result.recovered !== true) summary.notRecovered++;
    else if (result.resumes === 1) summary.recoveredOnce++;
  }
  return summary;
}
