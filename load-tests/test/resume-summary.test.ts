import { describe, expect, it } from 'vitest';
import { ResumeResultsError } from '../src/stats/resume-results-error.js';
import { summarizeResumes } from '../src/stats/resume-summary.js';
import type { ResumeViewerResult } from '../src/viewers/plan.js';

const recovered = (id: number, resumedMs = 100): ResumeViewerResult => ({
  id,
  firstSubscribedMs: 50,
  resumedMs,
  recovered: true,
  resumes: 1,
});

describe("the reconnect storm's viewer results", () => {
  it('count every viewer once, from whichever worker reported it', () => {
    const summary = summarizeResumes([0, 1, 2, 3], [recovered(2, 300), recovered(0, 100), recovered(3, 400), recovered(1, 200)]);
    expect(summary.recoveredOnce).toBe(4);
    expect(summary.resumed.count).toBe(4);
    expect(summary.firstSnapshot.count).toBe(4);
    expect([summary.notRecovered, summary.resumedMoreThanOnce, summary.notResumed]).toEqual([0, 0, 0]);
  });

  it('tell apart a resume not recovered, a viewer that resumed twice and one that never resumed', () => {
    const summary = summarizeResumes(
      [0, 1, 2, 3],
      [
        recovered(0),
        { id: 1, firstSubscribedMs: 50, resumedMs: 120, recovered: false, resumes: 1 },
        { ...recovered(2), resumes: 2 },
        { id: 3, firstSubscribedMs: 50, resumes: 0 },
      ],
    );
    expect(summary.recoveredOnce).toBe(1);
    expect(summary.notRecovered).toBe(1);
    expect(summary.resumedMoreThanOnce).toBe(1);
    expect(summary.notResumed).toBe(1);
    // The viewer that never resumed is not timed as a resume.
    expect(summary.resumed.count).toBe(3);
    expect(summary.firstSnapshot.count).toBe(4);
  });

  it('refuse a viewer reported twice, one missing, or one nobody planned', () => {
    expect(() => summarizeResumes([0, 1], [recovered(0), recovered(1), recovered(1)])).toThrow(ResumeResultsError);
    expect(() => summarizeResumes([0, 1], [recovered(0)])).toThrow(/1 missing/);
    expect(() => summarizeResumes([0, 1], [recovered(0), recovered(1), recovered(7)])).toThrow(/1 unknown/);
    expect(() => summarizeResumes([0, 0], [recovered(0)])).toThrow(/1 ids planned twice/);
  });
});
