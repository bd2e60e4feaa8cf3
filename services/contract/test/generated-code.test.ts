import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const packageDir = resolve(import.meta.dirname, '..');
const committed = join(packageDir, 'src', 'gen');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

describe('generated stream contract', () => {
  const fresh = mkdtempSync(join(tmpdir(), 'pitwall-gen-check-'));
  afterAll(() => rmSync(fresh, { recursive: true, force: true }));

  it('is what proto/ generates today (run `npm run generate` after changing proto/)', () => {
    execFileSync(process.execPath, [join(packageDir, 'scripts', 'generate.mjs'), fresh], { stdio: 'pipe' });
    const want = files(fresh)
      .map((f) => relative(fresh, f))
      .sort();
    const have = files(committed)
      .map((f) => relative(committed, f))
      .sort();
    expect(have).toEqual(want);
    for (const file of want) {
      expect(readFileSync(join(committed, file), 'utf8'), `${file} is stale`).toBe(readFileSync(join(fresh, file), 'utf8'));
    }
  });

  it('carries the DO-NOT-EDIT header', () => {
    for (const file of files(committed)) expect(readFileSync(file, 'utf8').split('\n')[0]).toMatch(/DO NOT EDIT/);
  });
});
