import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '@pitwall/testkit';
import { ensureBaseImage, type BaseImage, type Log } from './base-image.js';
import { contextDigest } from './context-digest.js';
import { mustRun } from './exec.js';
import { imageExists, imageId, imagesCacheDir, mustPodman, podman } from './podman.js';

/**
 * The three service images, built with podman from their Dockerfiles as they are: what differs from a
 * registry-connected CI is passed in, never edited in (the base image as NODE_IMAGE, the machine's CA
 * bundle and npm settings as read-only build mounts). Each image is tagged with a key of everything
 * that decides its content (Dockerfile, build context after .dockerignore, base image ID, build
 * arguments); a tag that exists is not built again.
 */

export const IMAGE_COMPONENTS = ['ingestion', 'writer', 'live-gateway'] as const;
export type ImageComponent = (typeof IMAGE_COMPONENTS)[number];

export const IMAGE_REPOSITORY_PREFIX = 'localhost/pitwall';
// Bump when the build command below changes in a way the key does not show.
const BUILD_FORMAT = '1';
// Tags of earlier inputs kept per component (their layers stay as build cache either way).
const KEEP_TAGS = 2;

export interface ServiceImage {
  component: ImageComponent;
  /** localhost/pitwall/<component>:in-<key> */
  reference: string;
  id: string;
  key: string;
  /** false when the tag existed already. */
  built: boolean;
  seconds: number;
}

export interface ImageSet {
  base: BaseImage;
  images: ServiceImage[];
}

export function imageRepository(component: ImageComponent): string {
  return `${IMAGE_REPOSITORY_PREFIX}/${component}`;
}

function buildArgs(base: BaseImage): Record<string, string> {
  return { NODE_IMAGE: base.reference };
}

/** Key of one image's inputs. */
export function imageKey(component: ImageComponent, context: string, base: BaseImage): string {
  return createHash('sha256')
    .update(`${BUILD_FORMAT}\n${component}\n${context}\n${base.id}\n${JSON.stringify(buildArgs(base))}\n`)
    .update(readFileSync(join(REPO_ROOT, 'services', component, 'Dockerfile')))
    .digest('hex')
    .slice(0, 16);
}

const CONTAINER_CA_FILE = '/etc/ssl/certs/ca-certificates.crt';
// npm's global config for a node in /usr/local (the images' prefix).
const CONTAINER_NPMRC = '/usr/local/etc/npmrc';

/**
 * Read-only mounts for the RUN steps: this machine's way to the npm registry. PITWALL_BUILD_CA_FILE and
 * PITWALL_BUILD_NPMRC name them explicitly; otherwise npm's own settings here (registry, CA file,
 * proxies) are written into an npmrc for the build. None when npm talks to the public registry directly.
 */
async function buildMounts(): Promise<string[]> {
  const settings = new Map<string, string>();
  const text = await mustRun('npm', ['config', 'get', 'registry', 'cafile', 'proxy', 'https-proxy', 'noproxy', 'strict-ssl'], {
    cwd: imagesCacheDir(),
  });
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    const value = line.slice(at + 1).trim();
    if (at > 0 && value !== '' && value !== 'null') settings.set(line.slice(0, at), value);
  }
  const caFile = process.env.PITWALL_BUILD_CA_FILE ?? settings.get('cafile') ?? process.env.NODE_EXTRA_CA_CERTS;
  const mounts: string[] = [];
  if (caFile !== undefined && existsSync(caFile)) mounts.push('--volume', `${caFile}:${CONTAINER_CA_FILE}:ro`);
  let npmrc = process.env.PITWALL_BUILD_NPMRC;
  if (npmrc === undefined) {
    const lines: string[] = [];
    const registry = settings.get('registry');
    if (registry !== undefined && registry !== 'https://registry.npmjs.org/') lines.push(`registry=${registry}`);
    if (mounts.length > 0) lines.push(`cafile=${CONTAINER_CA_FILE}`);
    for (const key of ['proxy', 'https-proxy', 'noproxy']) if (settings.has(key)) lines.push(`${key}=${settings.get(key) ?? ''}`);
    if (settings.get('strict-ssl') === 'false') lines.push('strict-ssl=false');
    if (lines.length > 0) {
      npmrc = join(imagesCacheDir(), 'build.npmrc');
      writeFileSync(npmrc, `${lines.join('\n')}\n`);
    }
  }
  if (npmrc !== undefined) mounts.push('--volume', `${npmrc}:${CONTAINER_NPMRC}:ro`);
  return mounts;
}

async function dropOldTags(component: ImageComponent, current: string): Promise<void> {
  const repository = imageRepository(component);
  const listed = JSON.parse(await mustPodman(['images', '--format', 'json', '--filter', `reference=${repository}`])) as {
    Names?: string[];
    Created?: number;
  }[];
  // podman lists an image once per name, each time with all its names.
  const created = new Map<string, number>();
  for (const image of listed) for (const name of image.Names ?? []) created.set(name, image.Created ?? 0);
  const tagged = [...created]
    .filter(([name]) => name.startsWith(`${repository}:in-`) && name !== current)
    .sort((a, b) => b[1] - a[1])
    .map(([name]) => ({ name }));
  for (const { name } of tagged.slice(KEEP_TAGS - 1)) await podman(['untag', name, name]);
}

/** Builds what is missing: the base, then each image whose inputs have no tag yet. */
export async function ensureImages(options: { components?: readonly ImageComponent[]; log?: Log } = {}): Promise<ImageSet> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  mkdirSync(join(imagesCacheDir(), 'logs'), { recursive: true });
  const base = await ensureBaseImage(log);
  const context = contextDigest(REPO_ROOT).digest;
  const images: ServiceImage[] = [];
  let mounts: string[] | undefined;
  for (const component of options.components ?? IMAGE_COMPONENTS) {
    const started = Date.now();
    const key = imageKey(component, context, base);
    const reference = `${imageRepository(component)}:in-${key}`;
    let built = false;
    if (!(await imageExists(reference))) {
      mounts ??= await buildMounts();
      const logFile = join(imagesCacheDir(), 'logs', `${component}-${key}.log`);
      log(`[images] building ${reference} (log ${logFile})`);
      await mustPodman(
        [
          'build',
          '--pull=never',
          '--network=host',
          '--layers',
          '--file',
          join('services', component, 'Dockerfile'),
          '--tag',
          reference,
          ...Object.entries(buildArgs(base)).flatMap(([name, value]) => ['--build-arg', `${name}=${value}`]),
          ...mounts,
          '.',
        ],
        { cwd: REPO_ROOT, logFile },
      );
      built = true;
      await dropOldTags(component, reference);
    }
    await mustPodman(['tag', reference, `${imageRepository(component)}:latest`]);
    const image: ServiceImage = { component, reference, id: await imageId(reference), key, built, seconds: (Date.now() - started) / 1000 };
    log(`[images] ${reference} ${built ? 'built' : 'up to date'} in ${image.seconds.toFixed(1)} s`);
    images.push(image);
  }
  return { base, images };
}
