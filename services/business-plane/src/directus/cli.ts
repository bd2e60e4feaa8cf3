import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { DirectusStartError } from '../errors/directus-start-error.js';
import { directusEnv } from './env.js';
import type { DirectusInstallation } from './install.js';

export interface CliTarget {
  databaseUrl: string;
  dataDir: string;
  adminEmail?: string;
  adminPassword?: string;
}

/** Runs one Directus CLI command (bootstrap, schema apply/snapshot) against a database and waits for it. */
export function runDirectusCli(
  installation: DirectusInstallation,
  target: CliTarget,
  args: string[],
  timeoutMs = 180_000,
): Promise<string> {
  mkdirSync(target.dataDir, { recursive: true });
  const env = directusEnv({
    installationDir: installation.directusDir,
    databaseUrl: target.databaseUrl,
    port: 0,
    host: '127.0.0.1',
    publicUrl: 'http://127.0.0.1',
    // The CLI signs nothing that outlives it; the running instance gets its own key and secret.
    key: 'pitwall-cli',
    secret: 'pitwall-cli',
    dataDir: target.dataDir,
    accessTokenTtl: '15m',
    adminEmail: target.adminEmail,
    adminPassword: target.adminPassword,
    extra: { LOG_LEVEL: 'info' },
  });
  return new Promise((resolve, reject) => {
    execFile(
      installation.node,
      [installation.cli, ...args],
      { env, cwd: target.dataDir, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new DirectusStartError(`directus ${args.join(' ')} failed: ${err.message}\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`),
          );
          return;
        }
        resolve(stdout + stderr);
      },
    );
  });
}
