import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aptInstall, cacheRoot, onPath } from '@pitwall/testkit';
import { mustRun, runCommand, type CommandOptions, type CommandResult } from './exec.js';

/**
 * podman as pitwall builds and runs its images here: its own image store in the cache (outside the
 * clone, apart from any other podman use of the machine), runc, and default ulimits the sandbox allows.
 */

/** Everything `make images` keeps: the store, the stand-in base, downloads, build logs. */
export function imagesCacheDir(): string {
  return join(cacheRoot(), 'images');
}

/** Commands the image build and smoke test run, and the Debian package of each. */
const TOOLS: Record<string, string> = { podman: 'podman', runc: 'runc', debootstrap: 'debootstrap' };

/** Installs podman, runc and debootstrap when root and missing; otherwise says what to install. */
export function ensureImageTools(): void {
  const missing = Object.entries(TOOLS)
    .filter(([command]) => onPath(command) === undefined)
    .map(([, pkg]) => pkg);
  if (missing.length > 0) aptInstall(missing);
}

/** The process's hard limits: podman's defaults ask for more open files than the sandbox allows, so containers get these. */
function hardLimits(): { nofile: number; nproc: number } {
  const [nofile = '', nproc = ''] = execFileSync('bash', ['-c', 'ulimit -Hn; ulimit -Hu'], { encoding: 'utf8' }).trim().split('\n');
  const bounded = (text: string, max: number) => (text === 'unlimited' ? max : Math.min(Number(text), max));
  return { nofile: bounded(nofile, 1_048_576), nproc: bounded(nproc, 32_768) };
}

function writeIfChanged(file: string, content: string): void {
  if (existsSync(file) && readFileSync(file, 'utf8') === content) return;
  writeFileSync(file, content);
}

let environment: NodeJS.ProcessEnv | undefined;

/** The environment podman runs with: CONTAINERS_CONF and CONTAINERS_STORAGE_CONF written into the cache. */
export function podmanEnvironment(): NodeJS.ProcessEnv {
  if (environment !== undefined) return environment;
  const dir = imagesCacheDir();
  const runRoot = join(tmpdir(), `pitwall-podman-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true });
  const { nofile, nproc } = hardLimits();
  const containersConf = join(dir, 'containers.conf');
  writeIfChanged(
    containersConf,
    [
      '# Written by @pitwall/images (services/images/src/podman.ts).',
      '[containers]',
      '# Within the hard limits of this process: podman asks for more by default, which the sandbox refuses.',
      `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]`,
      '',
      '[engine]',
      '# crun refuses the hybrid cgroup layout of these machines.',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `tmp_dir = "${join(runRoot, 'libpod')}"`,
      '',
    ].join('\n'),
  );
  const storageConf = join(dir, 'storage.conf');
  writeIfChanged(
    storageConf,
    [
      '# Written by @pitwall/images: pitwall images live in their own store, in the cache.',
      '[storage]',
      'driver = "overlay"',
      `graphroot = "${join(dir, 'storage')}"`,
      `runroot = "${join(runRoot, 'storage')}"`,
      '',
    ].join('\n'),
  );
  environment = { ...process.env, CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf };
  return environment;
}

export function podman(args: readonly string[], options: Omit<CommandOptions, 'env'> = {}): Promise<CommandResult> {
  return runCommand('podman', args, { ...options, env: podmanEnvironment() });
}

export function mustPodman(args: readonly string[], options: Omit<CommandOptions, 'env'> = {}): Promise<string> {
  return mustRun('podman', args, { ...options, env: podmanEnvironment() });
}

export async function imageExists(reference: string): Promise<boolean> {
  return (await podman(['image', 'exists', reference])).code === 0;
}

/** The image ID (sha256 hex of its config) of a local image. */
export async function imageId(reference: string): Promise<string> {
  return (await mustPodman(['image', 'inspect', '--format', '{{.Id}}', reference])).trim();
}
