import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirectusStartError } from '../errors/directus-start-error.js';

/** Root of this package, from src/ (tests) or dist/ (builds) alike. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const INSTALL_SCRIPT = join(PACKAGE_ROOT, 'scripts', 'install-directus.sh');
export const DIRECTUS_VERSION = '11.17.4';

export interface DirectusInstallation {
  /** Node 22 binary Directus runs on (Node 20, which runs everything else, is too old for it). */
  node: string;
  /** Folder whose node_modules holds directus. */
  directusDir: string;
  /** The Directus CLI entry (`node <cli> bootstrap|start|schema ...`). */
  cli: string;
  version: string;
}

let pending: Promise<DirectusInstallation> | undefined;

/**
 * Installs Node 22 and Directus into the cache outside the clone when missing (about six minutes
 * the first time, compiled native modules), then returns where they are. The script holds a file
 * lock, so parallel callers wait for one install.
 */
export function ensureDirectusInstalled(options: { onLog?: (line: string) => void } = {}): Promise<DirectusInstallation> {
  pending ??= runInstaller(options.onLog).catch((err: unknown) => {
    pending = undefined;
    throw err;
  });
  return pending;
}

function runInstaller(onLog?: (line: string) => void): Promise<DirectusInstallation> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      'bash',
      [INSTALL_SCRIPT],
      { env: { ...process.env, DIRECTUS_VERSION }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new DirectusStartError(`installing Directus failed (${INSTALL_SCRIPT}): ${err.message}\n${stderr.slice(-4000)}`));
          return;
        }
        const values = new Map<string, string>();
        for (const line of stdout.split('\n')) {
          const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
          if (match?.[1] && match[2] !== undefined) values.set(match[1], match[2]);
        }
        const node = values.get('NODE22');
        const directusDir = values.get('DIRECTUS_DIR');
        if (!node || !directusDir) {
          reject(
            new DirectusStartError(`the Directus installer printed no NODE22=/DIRECTUS_DIR= lines:\n${stdout}\n${stderr.slice(-2000)}`),
          );
          return;
        }
        const cli = join(directusDir, 'node_modules', 'directus', 'cli.js');
        if (!existsSync(cli)) {
          reject(new DirectusStartError(`Directus CLI missing at ${cli}: remove ${directusDir} and run again`));
          return;
        }
        resolvePromise({ node, directusDir, cli, version: DIRECTUS_VERSION });
      },
    );
    // The first install takes minutes: let the caller show progress.
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line.trim()) onLog?.(line);
    });
  });
}
