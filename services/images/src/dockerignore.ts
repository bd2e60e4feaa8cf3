import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * .dockerignore of a build context: which paths the builder leaves out. Used to key the image cache on
 * exactly what a build can see, and by the Dockerfile checks.
 */

/** The patterns of `<contextDir>/.dockerignore` (comments and blank lines dropped). */
export function readDockerignore(contextDir: string): string[] {
  return readFileSync(join(contextDir, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

function patternRegex(pattern: string): RegExp {
  const body = pattern
    .split('/')
    .map((segment) =>
      segment === '**'
        ? '(?:.*)'
        : segment
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '[^/]'),
    )
    .join('/')
    .replace(/\(\?:\.\*\)\//g, '(?:.*/)?');
  return new RegExp(`^${body}(?:/.*)?$`);
}

/** Matching as the builders do: `*` and `?` within a segment, `**` across segments, a pattern matches a path and everything under it, `!` re-includes, the last match wins. */
export function isIgnored(path: string, patterns: readonly string[]): boolean {
  let result = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\/+/, '').replace(/\/+$/, '');
    if (patternRegex(pattern).test(path)) result = !negate;
  }
  return result;
}
