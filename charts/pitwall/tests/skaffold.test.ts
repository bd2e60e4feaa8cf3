import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CHART_DIR, COMPONENTS, DEV_DEPS_CHART_DIR, find, render, REPO_ROOT, type KubeObject } from './support/chart.js';
import { Service } from './support/models.js';
import { deployment, mainContainer } from './support/objects.js';

/** skaffold cannot run here (no Docker, no cluster): its config is parsed and checked against the repository. */

interface HelmRelease {
  name: string;
  chartPath: string;
  namespace?: string;
  valuesFiles?: string[];
  setValueTemplates?: Record<string, string>;
}

interface SkaffoldConfig {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  build: { local?: { push?: boolean }; artifacts: { image: string; context?: string; docker?: { dockerfile?: string } }[] };
  deploy: { helm: { releases: HelmRelease[]; hooks?: { before?: { host?: { command?: string[] } }[] } } };
  portForward?: { resourceType: string; resourceName: string; namespace?: string; port: number; localPort?: number }[];
  profiles?: { name: string; patches?: { op: 'add' | 'remove' | 'replace'; path: string; value?: unknown }[] }[];
}

function loadConfig(): SkaffoldConfig {
  const documents = parseAllDocuments(readFileSync(join(REPO_ROOT, 'skaffold.yaml'), 'utf8'));
  expect(Array.isArray(documents) ? documents.length : 0).toBe(1);
  const [document] = Array.isArray(documents) ? documents : [];
  if (document === undefined || document.errors.length > 0) throw new Error(`skaffold.yaml does not parse: ${String(document?.errors)}`);
  return document.toJS() as SkaffoldConfig;
}

/** RFC 6902 add/remove/replace on a copy, as skaffold applies a profile's patches. */
function applyPatches(
  config: SkaffoldConfig,
  patches: NonNullable<NonNullable<SkaffoldConfig['profiles']>[number]['patches']>,
): SkaffoldConfig {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const patch of patches) {
    const segments = patch.path.split('/').slice(1);
    const last = segments.pop();
    if (last === undefined) throw new Error(`bad patch path ${patch.path}`);
    let parent: unknown = copy;
    for (const segment of segments) {
      parent = Array.isArray(parent) ? parent[Number(segment)] : (parent as Record<string, unknown> | undefined)?.[segment];
      if (parent === undefined) throw new Error(`patch path ${patch.path} does not exist`);
    }
    if (Array.isArray(parent)) {
      const index = Number(last);
      if (patch.op !== 'add' && index >= parent.length) throw new Error(`patch path ${patch.path} does not exist`);
      if (patch.op === 'remove') parent.splice(index, 1);
      else if (patch.op === 'replace') parent[index] = patch.value;
      else parent.splice(index, 0, patch.value);
    } else {
      const record = parent as Record<string, unknown>;
      if (patch.op !== 'add' && !(last in record)) throw new Error(`patch path ${patch.path} does not exist`);
      if (patch.op === 'remove') delete record[last];
      else record[last] = patch.value;
    }
  }
  return copy as unknown as SkaffoldConfig;
}

/** Skaffold's template key of an artifact: `/` and `-` become `_`. */
function artifactKey(image: string): string {
  return image.replace(/[/-]/g, '_');
}

function pitwallRelease(config: SkaffoldConfig): HelmRelease {
  const release = config.deploy.helm.releases.find((r) => r.chartPath === 'charts/pitwall');
  if (release === undefined) throw new Error('no release of charts/pitwall');
  return release;
}

/** The release rendered as skaffold deploys it, with image templates replaced by recognisable values. */
async function renderAsSkaffold(release: HelmRelease, config: SkaffoldConfig): Promise<KubeObject[]> {
  const values: Record<string, unknown> = {};
  for (const [key, templateText] of Object.entries(release.setValueTemplates ?? {})) {
    const substituted = templateText.replace(/\{\{\s*\.IMAGE_(REPO|TAG)_([A-Za-z0-9_]+)\s*\}\}/g, (_m, part: string, name: string) => {
      const artifact = config.build.artifacts.find((a) => artifactKey(a.image) === name);
      if (artifact === undefined) throw new Error(`${key} refers to unknown artifact ${name}`);
      return part === 'REPO' ? `registry.test/${artifact.image}` : `tag-of-${name}`;
    });
    // setValueTemplates keys are helm --set paths.
    const path = key.split('.');
    let node = values;
    for (const segment of path.slice(0, -1)) node = (node[segment] ??= {}) as Record<string, unknown>;
    node[path.at(-1) ?? ''] = substituted;
  }
  return render({
    release: release.name,
    namespace: release.namespace,
    valuesFiles: (release.valuesFiles ?? []).map((f) => join(REPO_ROOT, f)),
    values,
  });
}

describe('skaffold.yaml', () => {
  const config = loadConfig();

  it('is a skaffold v4 Config', () => {
    expect(config.apiVersion).toMatch(/^skaffold\/v4beta\d+$/);
    expect(config.kind).toBe('Config');
  });

  it('builds the three images from their Dockerfiles with the repository root as context', () => {
    expect(config.build.artifacts.map((a) => a.image).sort()).toEqual(COMPONENTS.map((c) => `pitwall/${c}`).sort());
    for (const artifact of config.build.artifacts) {
      const component = artifact.image.replace('pitwall/', '');
      expect(artifact.context).toBe('.');
      expect(artifact.docker?.dockerfile).toBe(`services/${component}/Dockerfile`);
      expect(existsSync(join(REPO_ROOT, artifact.docker?.dockerfile ?? 'missing'))).toBe(true);
    }
    expect(config.build.local?.push).toBe(false);
  });

  it('deploys the dev dependencies first, then the chart with values-dev.yaml', () => {
    const [deps, pitwall, ...others] = config.deploy.helm.releases;
    expect(others).toEqual([]);
    expect(deps?.chartPath).toBe('k8s/dev');
    expect(existsSync(join(DEV_DEPS_CHART_DIR, 'Chart.yaml'))).toBe(true);
    expect(pitwall?.chartPath).toBe('charts/pitwall');
    expect(existsSync(join(CHART_DIR, 'Chart.yaml'))).toBe(true);
    expect(pitwall?.valuesFiles).toEqual(['charts/pitwall/values-dev.yaml']);
    expect(deps?.namespace).toBe(pitwall?.namespace);
  });

  it('builds the Directus extension k8s/dev mounts before helm renders it, and only where k8s/dev is deployed', () => {
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'services/business-plane/extensions/events-claim/package.json'), 'utf8')) as {
      name: string;
    };
    const commands = (config.deploy.helm.hooks?.before ?? []).map((hook) => hook.host?.command?.join(' '));
    expect(commands).toEqual([`npm run build -w ${manifest.name}`]);
    for (const profile of config.profiles ?? []) {
      const patched = applyPatches(config, profile.patches ?? []);
      expect(patched.deploy.helm.releases.some((r) => r.chartPath === 'k8s/dev')).toBe(false);
      expect(patched.deploy.helm.hooks, profile.name).toBeUndefined();
    }
  });

  it('sets each component image to the image skaffold built for it', async () => {
    const release = pitwallRelease(config);
    const objects = await renderAsSkaffold(release, config);
    for (const component of COMPONENTS) {
      const image = mainContainer(deployment(objects, `${release.name}-${component}`)).image;
      expect(image).toBe(`registry.test/pitwall/${component}:tag-of-${artifactKey(`pitwall/${component}`)}`);
    }
  });

  it('port-forwards the gateway, ingestion and Directus to Services that exist with those ports', async () => {
    const forwards = config.portForward ?? [];
    const objects = [
      ...(await renderAsSkaffold(pitwallRelease(config), config)),
      ...(await render({ chartDir: DEV_DEPS_CHART_DIR, release: 'pitwall-dev-deps' })),
    ];
    expect(forwards.map((f) => f.resourceName).sort()).toEqual(['directus', 'pitwall-ingestion', 'pitwall-live-gateway']);
    for (const forward of forwards) {
      expect(forward.resourceType).toBe('service');
      const service = find(objects, 'Service', forward.resourceName);
      if (!Service.is(service)) throw new Error('not a Service');
      expect(
        service.spec?.ports?.map((p) => p.port),
        forward.resourceName,
      ).toContain(forward.port);
    }
    expect(forwards.find((f) => f.resourceName === 'pitwall-live-gateway')?.localPort).toBe(8080);
    expect(forwards.find((f) => f.resourceName === 'pitwall-ingestion')?.localPort).toBe(5027);
  });

  it.each(['staging', 'prod'] as const)(
    'has a %s profile that pushes and deploys only the chart with that environment’s values',
    async (environment) => {
      const profile = config.profiles?.find((p) => p.name === environment);
      expect(profile).toBeDefined();
      const patched = applyPatches(config, profile?.patches ?? []);
      expect(patched.build.local?.push).toBe(true);
      expect(patched.deploy.helm.releases.map((r) => r.chartPath)).toEqual(['charts/pitwall']);
      const release = pitwallRelease(patched);
      expect(release.valuesFiles).toEqual([`charts/pitwall/values-${environment}.yaml`]);
      expect(patched.portForward).toBeUndefined();
      const objects = await renderAsSkaffold(release, patched);
      expect(mainContainer(deployment(objects, `${release.name}-writer`)).image).toMatch(/^registry\.test\/pitwall\/writer:/);
    },
  );
});
