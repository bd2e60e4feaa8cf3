import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { summarizeResumes } from '../src/stats/resume-summary.js';
import { buildExecArgv, ViewerFleet } from '../src/viewers/viewer-fleet.js';

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('viewer worker processes', () => {
  it("run from the build whatever export conditions the parent runs with (a test runner's source condition)", () => {
    expect(
      buildExecArgv([
        '--require',
        'x.cjs',
        '--conditions',
        '@pitwall/source',
        '--conditions=development',
        '-C',
        'node',
        '--max-old-space-size=512',
      ]),
    ).toEqual(['--require', 'x.cjs', '--max-old-space-size=512']);
    expect(buildExecArgv([])).toEqual([]);
  });

  it('hand every resume viewer to one worker and report each exactly once', async () => {
    const fleet = ViewerFleet.start(2);
    try {
      const before = await fleet.resumeReport();
      expect(before.loads).toHaveLength(2);
      expect(before.viewers).toEqual([]);
      // Nothing listens: the clients keep retrying, and every one is still reported.
      const plans = Array.from({ length: 5 }, (_, id) => ({ id, eventId: 1 }));
      fleet.runResume({ urls: [`ws://127.0.0.1:${await closedPort()}/live`], accessToken: 'unused' }, plans);
      const report = await fleet.resumeReport({ withViewers: true });
      expect(report.viewers.map((viewer) => viewer.id).sort()).toEqual([0, 1, 2, 3, 4]);
      expect(report.progress).toEqual({ firstSubscribed: 0, resumed: 0 });
      expect(
        summarizeResumes(
          plans.map((plan) => plan.id),
          report.viewers,
        ).notResumed,
      ).toBe(5);
    } finally {
      await fleet.stop();
    }
  });
});
