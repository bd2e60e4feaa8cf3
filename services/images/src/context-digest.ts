import { createHash, type Hash } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isIgnored, readDockerignore } from './dockerignore.js';

/**
 * A digest of everything a build context holds once .dockerignore is applied: every path, its type,
 * whether it is executable, and its content. Two contexts with the same digest build the same image
 * from the same Dockerfile and base.
 */
export function contextDigest(contextDir: string): { digest: string; files: number } {
  const patterns = readDockerignore(contextDir);
  // A directory may be skipped whole only when no `!` pattern could re-include something inside it.
  const prune = !patterns.some((p) => p.startsWith('!'));
  const hash = createHash('sha256');
  let files = 0;
  const walk = (relativeDir: string) => {
    const entries = readdirSync(join(contextDir, relativeDir), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const path = relativeDir === '' ? entry.name : `${relativeDir}/${entry.name}`;
      const ignored = isIgnored(path, patterns);
      if (entry.isDirectory()) {
        if (ignored && prune) continue;
        if (!ignored) update(hash, 'D', path, '');
        walk(path);
      } else if (ignored) {
        continue;
      } else if (entry.isSymbolicLink()) {
        update(hash, 'L', path, readlinkSync(join(contextDir, path)));
      } else if (entry.isFile()) {
        const full = join(contextDir, path);
        const executable = (statSync(full).mode & 0o111) !== 0;
        update(hash, executable ? 'X' : 'F', path, createHash('sha256').update(readFileSync(full)).digest('hex'));
        files += 1;
      }
    }
  };
  walk('');
  return { digest: hash.digest('hex'), files };
}

function update(hash: Hash, type: string, path: string, content: string): void {
  hash.update(`${type}\0${path}\0${content}\n`);
}
