import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * An OCI image layout written by hand from uncompressed layer tarballs: the image's config and
 * manifest are plain functions of the layers and the given settings, so the same layers give the same
 * image ID (the config's digest) on every machine.
 */

export interface OciLayer {
  /** An uncompressed tar file; it is moved into the layout. */
  file: string;
  /** What made it (the image history). */
  createdBy: string;
}

export interface OciImage {
  layers: readonly OciLayer[];
  /** RFC 3339 time of every history entry and of the image. */
  created: string;
  env: readonly string[];
  entrypoint?: readonly string[];
  cmd: readonly string[];
  /** The name the layout's index gives the image (org.opencontainers.image.ref.name). */
  refName: string;
}

export interface OciResult {
  /** sha256:<hex> of the config: what podman reports as the image ID. */
  configDigest: string;
  manifestDigest: string;
}

export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function writeBlob(dir: string, content: string): { digest: string; size: number } {
  const hex = createHash('sha256').update(content).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', hex), content);
  return { digest: `sha256:${hex}`, size: Buffer.byteLength(content) };
}

export async function writeOciLayout(dir: string, image: OciImage): Promise<OciResult> {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const layers: { digest: string; size: number }[] = [];
  for (const layer of image.layers) {
    const hex = await fileSha256(layer.file);
    const size = statSync(layer.file).size;
    renameSync(layer.file, join(dir, 'blobs', 'sha256', hex));
    layers.push({ digest: `sha256:${hex}`, size });
  }
  const config = writeBlob(
    dir,
    JSON.stringify({
      created: image.created,
      architecture: 'amd64',
      os: 'linux',
      config: {
        Env: image.env,
        ...(image.entrypoint === undefined ? {} : { Entrypoint: image.entrypoint }),
        Cmd: image.cmd,
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      history: image.layers.map((l) => ({ created: image.created, created_by: l.createdBy })),
    }),
  );
  const manifest = writeBlob(
    dir,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
    }),
  );
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': image.refName },
        },
      ],
    }),
  );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { configDigest: config.digest, manifestDigest: manifest.digest };
}
