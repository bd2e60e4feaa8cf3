import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DirectusStartError } from '../errors/directus-start-error.js';
import { PACKAGE_ROOT } from './install.js';

/** The business plane's Directus extension (a hook adding `pitwall_events` to access tokens), as built by `npm run build`. */
export const EVENTS_CLAIM_EXTENSION_DIR = join(PACKAGE_ROOT, 'extensions', 'events-claim');
/** Its folder name inside a Directus's EXTENSIONS_PATH (Directus names an extension after its folder). */
export const EVENTS_CLAIM_EXTENSION_NAME = 'pitwall-events-claim';

/**
 * What a Directus needs of the extension, relative to its folder: the manifest and the compiled
 * JavaScript (no dependencies, no source). The same files k8s/dev mounts from a ConfigMap.
 */
export function eventsClaimExtensionFiles(): string[] {
  const dist = join(EVENTS_CLAIM_EXTENSION_DIR, 'dist');
  if (!existsSync(join(dist, 'hook.js'))) {
    throw new DirectusStartError(`the events-claim Directus extension is not built (${dist}/hook.js missing): run npm run build`);
  }
  const compiled = readdirSync(dist)
    .filter((file) => file.endsWith('.js'))
    .sort();
  return ['package.json', ...compiled.map((file) => `dist/${file}`)];
}

/** Copies the built extension into a Directus's EXTENSIONS_PATH, replacing an older copy. */
export function installEventsClaimExtension(extensionsPath: string): void {
  const target = join(extensionsPath, EVENTS_CLAIM_EXTENSION_NAME);
  const files = eventsClaimExtensionFiles();
  rmSync(target, { recursive: true, force: true });
  mkdirSync(join(target, 'dist'), { recursive: true });
  for (const file of files) cpSync(join(EVENTS_CLAIM_EXTENSION_DIR, file), join(target, file));
}
