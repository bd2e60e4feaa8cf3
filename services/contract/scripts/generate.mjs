// Generates the TypeScript for proto/ with protoc-gen-es (through buf) and stamps each file
// DO-NOT-EDIT. `node scripts/generate.mjs [outDir]`: the staleness test generates into a temp dir.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const outDir = resolve(process.argv[2] ?? join(here, '../src/gen'));
export const HEADER = '// Code generated from proto/ by `npm run generate -w services/contract`. DO NOT EDIT.\n';

const work = mkdtempSync(join(tmpdir(), 'pitwall-gen-'));
try {
  const template = JSON.stringify({
    version: 'v2',
    plugins: [{ local: join(repoRoot, 'node_modules/.bin/protoc-gen-es'), out: work, opt: ['target=ts', 'import_extension=js'] }],
  });
  execFileSync(join(repoRoot, 'node_modules/.bin/buf'), ['generate', 'proto', '--template', template], {
    cwd: repoRoot,
    stdio: 'inherit',
  });
  const stamp = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) stamp(path);
      else writeFileSync(path, HEADER + readFileSync(path, 'utf8'));
    }
  };
  stamp(work);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  cpSync(work, outDir, { recursive: true });
} finally {
  rmSync(work, { recursive: true, force: true });
}
