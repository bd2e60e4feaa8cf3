import { describe, expect, it } from 'vitest';
import { buildExecArgv } from '../src/viewers/viewer-fleet.js';

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
});
