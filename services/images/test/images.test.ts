import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { contextDigest } from '../src/context-digest.js';
import { isIgnored } from '../src/dockerignore.js';
import { writeOciLayout } from '../src/oci-layout.js';

const scratch: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pitwall-images-'));
  scratch.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('.dockerignore matching', () => {
  it('matches a path and everything under it, * within a segment, ** across, the last pattern winning', () => {
    const patterns = ['**/node_modules', 'Dockerfile', 'docs', '*.log', 'services/*/dist', '!docs/keep.md'];
    expect(isIgnored('node_modules', patterns)).toBe(true);
    expect(isIgnored('services/writer/node_modules/pg/index.js', patterns)).toBe(true);
    expect(isIgnored('Dockerfile', patterns)).toBe(true);
    expect(isIgnored('services/writer/Dockerfile', patterns)).toBe(false);
    expect(isIgnored('services/writer/dist/main.js', patterns)).toBe(true);
    expect(isIgnored('services/writer/src/main.ts', patterns)).toBe(false);
    expect(isIgnored('build.log', patterns)).toBe(true);
    expect(isIgnored('logs/build.log', patterns)).toBe(false);
    expect(isIgnored('docs/kubernetes.md', patterns)).toBe(true);
    expect(isIgnored('docs/keep.md', patterns)).toBe(false);
  });
});

describe('build context digest', () => {
  function context(): string {
    const dir = tempDir();
    mkdirSync(join(dir, 'src'));
    mkdirSync(join(dir, 'node_modules/x'), { recursive: true });
    writeFileSync(join(dir, '.dockerignore'), '**/node_modules\n*.log\n');
    writeFileSync(join(dir, 'src/main.ts'), 'export {};\n');
    writeFileSync(join(dir, 'node_modules/x/index.js'), '1');
    writeFileSync(join(dir, 'run.log'), 'a');
    return dir;
  }

  it('changes with a file the build sees: its content, a new file, its executable bit', () => {
    const dir = context();
    const before = contextDigest(dir);
    expect(before.files).toBe(2);
    writeFileSync(join(dir, 'src/main.ts'), 'export const x = 1;\n');
    const edited = contextDigest(dir).digest;
    expect(edited).not.toBe(before.digest);
    chmodSync(join(dir, 'src/main.ts'), 0o755);
    expect(contextDigest(dir).digest).not.toBe(edited);
    chmodSync(join(dir, 'src/main.ts'), 0o644);
    expect(contextDigest(dir).digest).toBe(edited);
    writeFileSync(join(dir, 'src/other.ts'), '');
    expect(contextDigest(dir).digest).not.toBe(edited);
  });

  it('stays the same when only ignored files change', () => {
    const dir = context();
    const before = contextDigest(dir).digest;
    writeFileSync(join(dir, 'node_modules/x/index.js'), '2');
    writeFileSync(join(dir, 'other.log'), 'b');
    expect(contextDigest(dir).digest).toBe(before);
  });
});

describe('OCI layout', () => {
  async function layout(created: string, content: string): Promise<{ config: string; manifest: string; dir: string }> {
    const dir = tempDir();
    writeFileSync(join(dir, 'layer.tar'), content);
    const result = await writeOciLayout(join(dir, 'oci'), {
      layers: [{ file: join(dir, 'layer.tar'), createdBy: 'test' }],
      created,
      env: ['PATH=/usr/bin'],
      cmd: ['node'],
      refName: 'localhost/test:1',
    });
    return { config: result.configDigest, manifest: result.manifestDigest, dir: join(dir, 'oci') };
  }

  it('gives the same image ID (config digest) for the same layers and settings, another for other ones', async () => {
    const a = await layout('2026-01-01T00:00:00Z', 'layer bytes');
    const b = await layout('2026-01-01T00:00:00Z', 'layer bytes');
    expect(a.config).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b).toMatchObject({ config: a.config, manifest: a.manifest });
    expect((await layout('2026-01-02T00:00:00Z', 'layer bytes')).config).not.toBe(a.config);
    expect((await layout('2026-01-01T00:00:00Z', 'other bytes')).config).not.toBe(a.config);
  });

  it('writes an index naming the manifest, and blobs named by their digest', async () => {
    const { dir, manifest, config } = await layout('2026-01-01T00:00:00Z', 'layer bytes');
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    expect(index.manifests[0]?.digest).toBe(manifest);
    expect(index.manifests[0]?.annotations['org.opencontainers.image.ref.name']).toBe('localhost/test:1');
    const configJson = JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', config.replace('sha256:', '')), 'utf8')) as {
      rootfs: { diff_ids: string[] };
    };
    expect(configJson.rootfs.diff_ids).toHaveLength(1);
  });
});
