import { spawnSync } from 'node:child_process';
import { ensureImages, IMAGE_COMPONENTS, type ImageComponent } from './build.js';
import { ensureImageTools, podmanEnvironment } from './podman.js';

// `make images` (node services/images/dist/cli.js [component...]): builds what is missing and prints the
// image references. `... cli.js podman <args>` runs podman on the images' own store.

const [first, ...rest] = process.argv.slice(2);

if (first === 'podman') {
  const result = spawnSync('podman', rest, { stdio: 'inherit', env: podmanEnvironment() });
  process.exit(result.status ?? 1);
}

const requested = [first, ...rest].filter((a): a is string => a !== undefined);
const unknown = requested.filter((c) => !(IMAGE_COMPONENTS as readonly string[]).includes(c));
if (unknown.length > 0) {
  process.stderr.write(`unknown image ${unknown.join(', ')}; known: ${IMAGE_COMPONENTS.join(', ')}\n`);
  process.exit(2);
}

const started = Date.now();
try {
  ensureImageTools();
  const { base, images } = await ensureImages({
    components: requested.length > 0 ? (requested as ImageComponent[]) : IMAGE_COMPONENTS,
  });
  process.stdout.write(`base ${base.reference} ${base.id}\n`);
  for (const image of images) process.stdout.write(`${image.component} ${image.reference} ${image.id}\n`);
  process.stdout.write(`[images] done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
} catch (err) {
  process.stderr.write(`[images] ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
