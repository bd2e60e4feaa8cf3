import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// The harness runs real servers. It finds their binaries, installs the Debian packages when they are
// missing and it runs as root, and otherwise says exactly what is missing.

const PG_ROOT = '/usr/lib/postgresql';

/** Absolute path of a command found on PATH, or undefined. */
export function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir, command);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

function postgresBinDir(): string | undefined {
  if (existsSync(PG_ROOT)) {
    const versions = readdirSync(PG_ROOT)
      .filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(PG_ROOT, versions[0], 'bin');
  }
  const initdb = onPath('initdb');
  return initdb ? join(initdb, '..') : undefined;
}

export interface Binaries {
  redisServer: string;
  /** Directory holding initdb, postgres, pg_ctl. */
  postgresBin: string;
}

let cached: Binaries | undefined;

/** Installs Debian packages when running as root; otherwise throws naming them and the command to run. */
export function aptInstall(packages: readonly string[]): void {
  const isRoot = process.getuid?.() === 0;
  if (!isRoot) {
    throw new Error(
      `missing Debian packages: ${packages.join(', ')}. Install them (as root: apt-get install -y ${packages.join(' ')}) and run again.`,
    );
  }
  process.stderr.write(`[testkit] installing missing Debian packages: ${packages.join(', ')}\n`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

/** Finds redis-server and the PostgreSQL binaries, installing them when root and missing. */
export function ensureBinaries(): Binaries {
  if (cached) return cached;
  const missing: string[] = [];
  if (!onPath('redis-server')) missing.push('redis-server');
  if (!postgresBinDir()) missing.push('postgresql');
  if (missing.length > 0) aptInstall(missing);
  const redisServer = onPath('redis-server');
  const postgresBin = postgresBinDir();
  if (!redisServer || !postgresBin) throw new Error('redis-server or PostgreSQL still not found after installing them');
  cached = { redisServer, postgresBin };
  return cached;
}
