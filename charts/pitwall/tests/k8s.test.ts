import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EVENTS_CLAIM_EXTENSION_DIR, EVENTS_CLAIM_EXTENSION_NAME, eventsClaimExtensionFiles } from '@pitwall/business-plane';
import {
  DEV_DEPS_CHART_DIR,
  find,
  NAMESPACE,
  parseObjects,
  render,
  renderEnvironment,
  REPO_ROOT,
  type KubeObject,
} from './support/chart.js';
import { Secret, Service, StatefulSet, validateObject } from './support/models.js';
import { allPodSpecs, configMapData, deployment, deployments, podSpec } from './support/objects.js';

/** k8s/: the dev cluster's dependencies (a small chart) and the cluster-level objects. */

let deps: KubeObject[];
let dev: KubeObject[];

beforeAll(async () => {
  deps = await render({ chartDir: DEV_DEPS_CHART_DIR, release: 'pitwall-dev-deps' });
  dev = await renderEnvironment('dev');
}, 60_000);

function secretData(objects: readonly KubeObject[], name: string): Record<string, string> {
  const secret = find(objects, 'Secret', name);
  if (!Secret.is(secret)) throw new Error(`${name} is not a Secret`);
  return secret.stringData ?? {};
}

function statefulSetArgs(name: string): string[] {
  const set = find(deps, 'StatefulSet', name);
  if (!StatefulSet.is(set)) throw new Error(`${name} is not a StatefulSet`);
  return set.spec?.template.spec?.containers[0]?.args ?? [];
}

describe('k8s/dev (dependencies of the dev cluster)', () => {
  it('renders Redis, PostgreSQL and Directus objects that validate against the Kubernetes schemas', () => {
    for (const object of deps) validateObject(object);
    for (const name of ['redis', 'postgres', 'directus']) find(deps, 'Service', name);
    expect(deps.every((o) => o.metadata.namespace === NAMESPACE)).toBe(true);
  });

  it('runs Redis with AOF (fsync every second), on a volume, never evicting stream entries', () => {
    const args = statefulSetArgs('redis').join(' ');
    expect(args).toContain('--appendonly yes');
    expect(args).toContain('--appendfsync everysec');
    expect(args).toContain('--maxmemory-policy noeviction');
    const set = find(deps, 'StatefulSet', 'redis');
    expect(StatefulSet.is(set) && set.spec?.volumeClaimTemplates?.[0]?.metadata?.name).toBe('data');
  });

  it('is wired to what values-dev.yaml gives the services (URLs, credentials, Directus secret and token)', () => {
    const secrets = secretData(dev, 'pitwall-secrets');
    const redis = new URL(secrets.REDIS_URL ?? '');
    const redisService = find(deps, 'Service', redis.hostname);
    expect(Service.is(redisService) && redisService.spec?.ports?.map((p) => p.port)).toContain(Number(redis.port));

    const database = new URL(secrets.DATABASE_URL ?? '');
    const postgres = secretData(deps, 'postgres');
    expect(database.username).toBe(postgres.POSTGRES_USER);
    expect(database.password).toBe(postgres.POSTGRES_PASSWORD);
    expect(database.pathname).toBe(`/${postgres.POSTGRES_DB ?? ''}`);
    find(deps, 'Service', database.hostname);

    const directus = secretData(deps, 'directus');
    expect(secrets.DIRECTUS_SECRET).toBe(directus.SECRET);
    expect(secrets.DIRECTUS_SERVICE_TOKEN).toBe(directus.ADMIN_TOKEN);
    const gatewayConfig = find(dev, 'ConfigMap', 'pitwall-live-gateway') as { data?: Record<string, string> };
    const directusUrl = new URL(gatewayConfig.data?.DIRECTUS_URL ?? '');
    const directusService = find(deps, 'Service', directusUrl.hostname);
    expect(Service.is(directusService) && directusService.spec?.ports?.map((p) => p.port)).toContain(Number(directusUrl.port));
  });

  it('applies the business plane’s own Directus schema snapshot (a symlink, so it never drifts)', () => {
    const linked = realpathSync(join(DEV_DEPS_CHART_DIR, 'files/directus-schema.yaml'));
    expect(linked).toBe(realpathSync(join(REPO_ROOT, 'services/business-plane/schema/snapshot.yaml')));
    const schema = find(deps, 'ConfigMap', 'directus-schema') as { data?: Record<string, string> };
    const snapshot = parse(schema.data?.['snapshot.yaml'] ?? '') as { collections?: { collection: string }[] };
    expect(snapshot.collections?.map((c) => c.collection)).toEqual(expect.arrayContaining(['events', 'devices', 'entries']));
    const init = podSpec(deployment(deps, 'directus')).initContainers?.map((c) => c.command?.slice(2, 4).join(' '));
    expect(init).toEqual(['bootstrap', 'schema apply']);
  });

  it('mounts the business plane’s events-claim extension into EXTENSIONS_PATH: the files startDirectus loads, byte for byte', () => {
    expect(realpathSync(join(DEV_DEPS_CHART_DIR, 'files/directus-extension'))).toBe(realpathSync(EVENTS_CLAIM_EXTENSION_DIR));
    const spec = podSpec(deployment(deps, 'directus'));
    const server = spec.containers.find((c) => c.name === 'directus');
    const env = new Map(server?.env?.map((e) => [e.name, e.value]));
    expect(env.get('EXTENSIONS_MUST_LOAD')).toBe('true');
    expect(env.get('PITWALL_EVENTS_CLAIM_MAX')).toBe('100');
    const mount = server?.volumeMounts?.find((m) => m.name === 'events-claim');
    expect(mount?.mountPath).toBe(`${env.get('EXTENSIONS_PATH') ?? '?'}/${EVENTS_CLAIM_EXTENSION_NAME}`);

    // The folder the volume makes: each ConfigMap key at its item path.
    const data = configMapData(deps, 'directus-extension-events-claim');
    const items = spec.volumes?.find((v) => v.name === 'events-claim')?.configMap?.items ?? [];
    const mounted = new Map(items.map((item) => [item.path, data[item.key]]));
    const files = eventsClaimExtensionFiles();
    expect([...mounted.keys()].sort()).toEqual([...files].sort());
    for (const file of files) expect(mounted.get(file), file).toBe(readFileSync(join(EVENTS_CLAIM_EXTENSION_DIR, file), 'utf8'));
    const manifest = JSON.parse(mounted.get('package.json') ?? '{}') as Record<string, { path?: string }>;
    expect(mounted.has(manifest['directus:extension']?.path ?? '?')).toBe(true);
  });

  it('runs every dependency as a non-root user', () => {
    for (const { owner, spec } of allPodSpecs(deps)) expect(spec.securityContext?.runAsNonRoot, owner).toBe(true);
    for (const set of deps.filter((o) => StatefulSet.is(o))) {
      if (StatefulSet.is(set)) expect(set.spec?.template.spec?.securityContext?.runAsNonRoot).toBe(true);
    }
  });
});

describe('k8s/cluster (cluster-level objects)', () => {
  const dir = join(REPO_ROOT, 'k8s/cluster');
  const objects = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseObjects(readFileSync(join(dir, f), 'utf8')));

  it('validates against the Kubernetes schemas', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['Namespace', 'NetworkPolicy', 'PriorityClass']);
    for (const object of objects) validateObject(object);
  });

  it('enforces the restricted Pod Security Standard on the namespace the chart deploys to', () => {
    const namespace = find(objects, 'Namespace', NAMESPACE);
    expect(namespace.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('defines the PriorityClass the prod values use', async () => {
    const prod = await renderEnvironment('prod');
    const classes = new Set(deployments(prod).map((d) => podSpec(d).priorityClassName));
    expect([...classes]).toEqual(['pitwall-telemetry']);
    find(objects, 'PriorityClass', 'pitwall-telemetry');
  });
});
