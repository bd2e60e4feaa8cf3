import { PROCESSOR_GROUP, shardKeys } from '@pitwall/contract';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CHART_DIR,
  COMPONENTS,
  componentName,
  DEV_DEPS_CHART_DIR,
  ENVIRONMENTS,
  find,
  helm,
  NAMESPACE,
  render,
  RELEASE,
  renderEnvironment,
  valuesFile,
  type KubeObject,
} from './support/chart.js';
import {
  HorizontalPodAutoscaler,
  Ingress,
  NetworkPolicy,
  Pod,
  PodDisruptionBudget,
  ScaledObject,
  Service,
  ServiceMonitor,
  validateObject,
} from './support/models.js';
import { allPodSpecs, configMapData, deployment, deployments, mainContainer, podLabels, podSpec, selects } from './support/objects.js';

const VARIANTS = ['default', ...ENVIRONMENTS] as const;
type Variant = (typeof VARIANTS)[number];

const rendered = new Map<Variant, KubeObject[]>();
function objectsOf(variant: Variant): KubeObject[] {
  const objects = rendered.get(variant);
  if (objects === undefined) throw new Error(`${variant} was not rendered`);
  return objects;
}

beforeAll(async () => {
  await Promise.all(
    VARIANTS.map(async (variant) => {
      rendered.set(variant, variant === 'default' ? await render() : await renderEnvironment(variant));
    }),
  );
}, 120_000);

describe('helm lint', () => {
  it.each(VARIANTS)('passes --strict with the %s values', async (variant) => {
    const args = ['lint', '--strict', CHART_DIR];
    if (variant !== 'default') args.push('--values', valuesFile(variant));
    const result = await helm(args);
    expect(result.stderr + result.stdout).toContain('0 chart(s) failed');
    expect(result.code).toBe(0);
  });

  it('passes --strict for the dev dependencies chart (k8s/dev)', async () => {
    const result = await helm(['lint', '--strict', DEV_DEPS_CHART_DIR]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });
});

describe.each(VARIANTS)('rendered with the %s values', (variant) => {
  it('renders objects that all validate against their Kubernetes or CRD schema', () => {
    const objects = objectsOf(variant);
    expect(objects.length).toBeGreaterThan(10);
    for (const object of objects) validateObject(object);
  });

  it('names every object validly, once, in the release namespace, with the chart labels', () => {
    const objects = objectsOf(variant);
    const seen = new Set<string>();
    for (const { kind, metadata } of objects) {
      expect(metadata.name, `${kind} name`).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(metadata.name.length, `${kind}/${metadata.name}`).toBeLessThanOrEqual(63);
      expect(seen.has(`${kind}/${metadata.name}`), `duplicate ${kind}/${metadata.name}`).toBe(false);
      seen.add(`${kind}/${metadata.name}`);
      expect(metadata.namespace, `${kind}/${metadata.name}`).toBe(NAMESPACE);
      expect(metadata.labels?.['app.kubernetes.io/instance'], `${kind}/${metadata.name}`).toBe(RELEASE);
      expect(metadata.labels?.['app.kubernetes.io/managed-by'], `${kind}/${metadata.name}`).toBe('Helm');
    }
  });

  it('runs every pod within the restricted Pod Security Standard, without a service account token', () => {
    const specs = allPodSpecs(objectsOf(variant));
    expect(specs.length).toBe(COMPONENTS.length + 1);
    for (const { owner, spec } of specs) {
      expect(spec.securityContext?.runAsNonRoot, owner).toBe(true);
      expect(spec.securityContext?.runAsUser ?? 1, owner).toBeGreaterThan(0);
      expect(spec.securityContext?.seccompProfile?.type, owner).toBe('RuntimeDefault');
      expect(spec.automountServiceAccountToken, owner).toBe(false);
      expect(spec.hostNetwork ?? false, owner).toBe(false);
      expect(spec.volumes?.some((v) => v.hostPath !== undefined) ?? false, owner).toBe(false);
      for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
        const context = container.securityContext;
        expect(context?.allowPrivilegeEscalation, `${owner} ${container.name}`).toBe(false);
        expect(context?.readOnlyRootFilesystem, `${owner} ${container.name}`).toBe(true);
        expect(context?.capabilities?.drop, `${owner} ${container.name}`).toEqual(['ALL']);
        expect(context?.capabilities?.add ?? [], `${owner} ${container.name}`).toEqual([]);
        expect(context?.privileged ?? false, `${owner} ${container.name}`).toBe(false);
        expect(container.resources?.requests?.memory, `${owner} ${container.name} memory request`).toBeDefined();
        expect(container.resources?.limits?.memory, `${owner} ${container.name} memory limit`).toBeDefined();
      }
    }
  });

  it.each(COMPONENTS)('gives %s probes on /healthz and /readyz of METRICS_PORT, a checksum/config and a tmp volume', (component) => {
    const objects = objectsOf(variant);
    const d = deployment(objects, componentName(component));
    const container = mainContainer(d);
    const metricsPort = Number(configMapData(objects, `${RELEASE}-shared`).METRICS_PORT);
    expect(metricsPort).toBe(9464);
    expect(container.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(metricsPort);
    expect(container.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'metrics' });
    expect(container.startupProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'metrics' });
    expect(d.spec?.template.metadata?.annotations?.['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
    expect(container.volumeMounts?.find((m) => m.mountPath === '/tmp')).toBeDefined();
    expect(container.command, 'the image CMD runs node as PID 1').toBeUndefined();
    expect(d.spec?.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
  });

  it('spreads every component over zones and nodes by its own pods (outside dev)', () => {
    for (const d of deployments(objectsOf(variant))) {
      const constraints = podSpec(d).topologySpreadConstraints ?? [];
      if (variant === 'dev') {
        expect(constraints).toEqual([]);
        continue;
      }
      expect(constraints.map((c) => c.topologyKey).sort()).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
      for (const constraint of constraints) expect(selects(constraint.labelSelector?.matchLabels, podLabels(d))).toBe(true);
    }
  });

  it('points every Service, PodDisruptionBudget, NetworkPolicy and ServiceMonitor at exactly one component', () => {
    const objects = objectsOf(variant);
    const pods = deployments(objects);
    const matching = (selector: Record<string, string> | undefined) => pods.filter((d) => selects(selector, podLabels(d)));
    for (const o of objects) {
      if (Service.is(o)) {
        const [target, ...others] = matching(o.spec?.selector);
        expect(target, `Service ${o.metadata?.name ?? ''}`).toBeDefined();
        expect(others).toEqual([]);
        if (target === undefined) continue;
        for (const port of o.spec?.ports ?? []) {
          const containerPort = mainContainer(target).ports?.find((p) => p.name === port.targetPort);
          expect(containerPort, `Service ${o.metadata?.name ?? ''} port ${port.name ?? ''}`).toBeDefined();
          expect(containerPort?.protocol ?? 'TCP').toBe(port.protocol ?? 'TCP');
        }
      }
      if (PodDisruptionBudget.is(o) || NetworkPolicy.is(o)) {
        const selector = PodDisruptionBudget.is(o) ? o.spec?.selector?.matchLabels : o.spec?.podSelector?.matchLabels;
        expect(matching(selector), `${o.kind} ${o.metadata?.name ?? ''}`).toHaveLength(1);
      }
      if (ServiceMonitor.is(o)) {
        const services = objects.filter((s) => Service.is(s) && selects(o.spec.selector.matchLabels, s.metadata?.labels ?? {}));
        expect(services, `ServiceMonitor ${o.metadata?.name ?? ''}`).toHaveLength(1);
        const [service] = services;
        expect(Service.is(service) && service.spec?.ports?.map((p) => p.name)).toEqual(['metrics']);
        expect(o.spec.endpoints?.[0]).toMatchObject({ port: 'metrics', path: '/metrics' });
      }
    }
  });

  it('reads only ConfigMaps and a Secret that the release has (or names the existing Secret)', () => {
    const objects = objectsOf(variant);
    const createdSecret = objects.find((o) => o.kind === 'Secret');
    for (const d of deployments(objects)) {
      const container = mainContainer(d);
      for (const from of container.envFrom ?? []) find(objects, 'ConfigMap', from.configMapRef?.name ?? '');
      for (const variable of container.env ?? []) {
        const ref = variable.valueFrom?.secretKeyRef;
        if (ref === undefined) continue;
        if (variant === 'dev') {
          expect(ref.name).toBe(createdSecret?.metadata.name);
          const data = (createdSecret as { stringData?: Record<string, string> } | undefined)?.stringData ?? {};
          expect(ref.key in data || ref.optional === true, `${variable.name} key ${ref.key}`).toBe(true);
        } else {
          expect(createdSecret).toBeUndefined();
          expect(ref.name).toBe(variant === 'default' ? 'pitwall-secrets' : `pitwall-${variant}`);
        }
      }
    }
  });

  it('names the live gateway and writer pods INSTANCE_ID after the pod (downward API)', () => {
    for (const component of ['live-gateway', 'writer'] as const) {
      const container = mainContainer(deployment(objectsOf(variant), componentName(component)));
      const instanceId = container.env?.find((e) => e.name === 'INSTANCE_ID');
      expect(instanceId?.valueFrom?.fieldRef?.fieldPath, component).toBe('metadata.name');
    }
  });

  it('lets the gateway keep serving while endpoints drop it (preStop sleep within the grace period)', () => {
    const d = deployment(objectsOf(variant), componentName('live-gateway'));
    const command = mainContainer(d).lifecycle?.preStop?.exec?.command ?? [];
    expect(command[0]).toBe('sleep');
    const sleep = Number(command[1]);
    expect(sleep).toBeGreaterThanOrEqual(1);
    expect(podSpec(d).terminationGracePeriodSeconds ?? 30).toBeGreaterThan(sleep);
  });

  it('scales what is autoscaled only through its autoscaler, targeting an existing Deployment', () => {
    const objects = objectsOf(variant);
    const autoscaled = new Set<string>();
    for (const o of objects) {
      if (HorizontalPodAutoscaler.is(o)) {
        deployment(objects, o.spec?.scaleTargetRef.name ?? '');
        autoscaled.add(o.spec?.scaleTargetRef.name ?? '');
        expect(o.spec?.minReplicas ?? 1).toBeLessThanOrEqual(o.spec?.maxReplicas ?? 0);
      }
      if (ScaledObject.is(o)) {
        deployment(objects, o.spec.scaleTargetRef.name);
        autoscaled.add(o.spec.scaleTargetRef.name);
      }
    }
    for (const d of deployments(objects)) {
      const name = d.metadata?.name ?? '';
      if (autoscaled.has(name)) expect(d.spec?.replicas, name).toBeUndefined();
      else expect(d.spec?.replicas, name).toBeGreaterThanOrEqual(1);
    }
    if (variant !== 'dev') expect(autoscaled.has(componentName('live-gateway'))).toBe(true);
  });

  it('exposes ingestion on TCP and UDP 5027 through one Service', () => {
    const service = find(objectsOf(variant), 'Service', componentName('ingestion'));
    if (!Service.is(service)) throw new Error('not a Service');
    expect(service.spec?.ports?.map((p) => [p.protocol, p.port]).sort()).toEqual([
      ['TCP', 5027],
      ['UDP', 5027],
    ]);
    expect(service.spec?.type).toBe(variant === 'dev' ? 'NodePort' : 'LoadBalancer');
    expect(service.spec?.externalTrafficPolicy).toBe(variant === 'dev' ? 'Cluster' : 'Local');
  });

  it('has a helm test pod that calls /readyz of every component through its metrics Service', () => {
    const objects = objectsOf(variant);
    const pod = objects.find((o) => o.kind === 'Pod');
    if (!Pod.is(pod)) throw new Error('no helm test pod');
    expect(pod.metadata?.annotations?.['helm.sh/hook']).toBe('test');
    const urls = (pod.spec?.containers[0]?.command ?? []).filter((arg) => arg.startsWith('http://'));
    expect(urls).toHaveLength(COMPONENTS.length);
    for (const url of urls) {
      const { hostname, port, pathname } = new URL(url);
      expect(pathname).toBe('/readyz');
      const service = find(objects, 'Service', hostname);
      expect(Service.is(service) && service.spec?.ports?.some((p) => p.port === Number(port))).toBe(true);
    }
    // The NetworkPolicies let it in.
    for (const policy of objects.filter((o) => NetworkPolicy.is(o))) {
      if (!NetworkPolicy.is(policy)) continue;
      const metricsRule = policy.spec?.ingress?.find((rule) => rule.ports?.some((p) => p.port === 'metrics'));
      expect(metricsRule?.from?.some((peer) => selects(peer.podSelector?.matchLabels, pod.metadata?.labels ?? {}))).toBe(true);
    }
  });
});

describe('environment specifics', () => {
  it('routes /live over TLS with WebSocket-friendly timeouts (staging and prod)', () => {
    for (const variant of ['staging', 'prod'] as const) {
      const objects = objectsOf(variant);
      const ingress = find(objects, 'Ingress', componentName('live-gateway'));
      if (!Ingress.is(ingress)) throw new Error('not an Ingress');
      const annotations = ingress.metadata?.annotations ?? {};
      expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(3600);
      expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBeGreaterThanOrEqual(3600);
      expect(annotations['cert-manager.io/cluster-issuer']).toBeDefined();
      const [rule] = ingress.spec?.rules ?? [];
      expect(ingress.spec?.tls?.[0]?.hosts).toEqual([rule?.host]);
      const path = rule?.http?.paths[0];
      expect(path?.path).toBe('/live');
      const backend = path?.backend.service;
      const service = find(objects, 'Service', backend?.name ?? '');
      expect(Service.is(service) && service.spec?.ports?.some((p) => p.name === backend?.port?.name)).toBe(true);
    }
  });

  it('has no Ingress, monitoring objects or NetworkPolicies in dev, and creates the dev Secret there only', () => {
    const kinds = new Set(objectsOf('dev').map((o) => o.kind));
    for (const kind of ['Ingress', 'ServiceMonitor', 'PrometheusRule', 'NetworkPolicy', 'HorizontalPodAutoscaler', 'PodDisruptionBudget']) {
      expect(kinds.has(kind), kind).toBe(false);
    }
    expect(kinds.has('Secret')).toBe(true);
  });

  it('scales the prod writer with KEDA on group processor lag, one trigger per stream shard', () => {
    const objects = objectsOf('prod');
    const scaled = find(objects, 'ScaledObject', componentName('writer'));
    if (!ScaledObject.is(scaled)) throw new Error('not a ScaledObject');
    const shared = configMapData(objects, `${RELEASE}-shared`);
    const streams = shardKeys(shared.STREAM_KEY ?? '', Number(shared.STREAM_SHARDS));
    expect(streams).toHaveLength(4);
    expect(scaled.spec.triggers.map((t) => t.metadata.stream)).toEqual(streams);
    // Production runs on a Redis Cluster: KEDA's cluster trigger, on the same seed nodes as the services.
    expect(shared.REDIS_CLUSTER_NODES).toMatch(/^[^:/\s,]+:\d+(,[^:/\s,]+:\d+)+$/);
    for (const trigger of scaled.spec.triggers) {
      expect(trigger.type).toBe('redis-cluster-streams');
      expect(trigger.metadata.consumerGroup).toBe(PROCESSOR_GROUP);
      expect(Number(trigger.metadata.lagCount)).toBeGreaterThan(0);
      expect(trigger.metadata.addresses).toBe(shared.REDIS_CLUSTER_NODES);
      expect(trigger.authenticationRef?.name).toBe(`${componentName('writer')}-redis`);
    }
    find(objects, 'TriggerAuthentication', `${componentName('writer')}-redis`);
    expect(scaled.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
  });

  it('deploys every dashboard file as a ConfigMap labelled for the Grafana sidecar', async () => {
    const { readdirSync } = await import('node:fs');
    const files = readdirSync(`${CHART_DIR}/dashboards`).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    const dashboards = objectsOf('prod').filter((o) => o.metadata.labels?.grafana_dashboard === '1');
    expect(dashboards).toHaveLength(files.length);
    for (const file of files) {
      const map = find(objectsOf('prod'), 'ConfigMap', `${RELEASE}-dashboard-${file.replace(/\.json$/, '')}`);
      const data = (map as { data?: Record<string, string> }).data ?? {};
      const json = data[`pitwall-${file}`];
      expect(json, file).toBeDefined();
      expect((JSON.parse(json ?? '{}') as { uid?: string }).uid).toMatch(/^pitwall-/);
    }
  });
});

describe('network policies let each component reach what its configuration points at', () => {
  it.each(['default', 'staging', 'prod'] as const)(
    'with the %s values: Redis, PostgreSQL, Directus, DNS and the trace collector',
    (variant) => {
      const objects = objectsOf(variant);
      const shared = configMapData(objects, `${RELEASE}-shared`);
      const gateway = configMapData(objects, componentName('live-gateway'));
      const needs: Record<string, number[]> = { ingestion: [6379, 53], writer: [6379, 5432, 53], 'live-gateway': [6379, 53] };
      needs['live-gateway']?.push(Number(new URL(gateway.DIRECTUS_URL ?? '').port || 80));
      const otlp = shared.OTEL_EXPORTER_OTLP_ENDPOINT;
      for (const component of COMPONENTS) {
        const policy = find(objects, 'NetworkPolicy', componentName(component));
        if (!NetworkPolicy.is(policy)) throw new Error('not a NetworkPolicy');
        const allowed = new Set((policy.spec?.egress ?? []).flatMap((rule) => (rule.ports ?? []).map((p) => Number(p.port))));
        const wanted = [...(needs[component] ?? []), ...(otlp === undefined ? [] : [Number(new URL(otlp).port)])];
        for (const port of wanted) expect(allowed.has(port), `${component} egress to port ${port}`).toBe(true);
      }
    },
  );
});

describe('rendering reacts to values', () => {
  it('changes the checksum/config annotation when the configuration changes, and only then', async () => {
    const checksums = async (values: Record<string, unknown>) => {
      const objects = await render({ values });
      return COMPONENTS.map((c) => deployment(objects, componentName(c)).spec?.template.metadata?.annotations?.['checksum/config']);
    };
    const base = await checksums({});
    expect(await checksums({ ingestion: { replicaCount: 5 } })).toEqual(base);
    const changed = await checksums({ config: { logLevel: 'debug' } });
    for (const [i, checksum] of changed.entries()) expect(checksum, COMPONENTS[i]).not.toBe(base[i]);
    const gatewayOnly = await checksums({
      liveGateway: { env: { GATEWAY_MAX_CONNECTIONS: '100' }, autoscaling: { targetConnectionsPerPod: 50 } },
    });
    expect(gatewayOnly[0]).toBe(base[0]);
    expect(gatewayOnly[2]).not.toBe(base[2]);
  });

  it('renders a -tcp and a -udp Service when the load balancer cannot mix protocols', async () => {
    const objects = await render({ values: { ingestion: { service: { splitProtocols: true } } } });
    const tcp = find(objects, 'Service', `${componentName('ingestion')}-tcp`);
    const udp = find(objects, 'Service', `${componentName('ingestion')}-udp`);
    expect(Service.is(tcp) && tcp.spec?.ports?.map((p) => p.protocol)).toEqual(['TCP']);
    expect(Service.is(udp) && udp.spec?.ports?.map((p) => p.protocol)).toEqual(['UDP']);
    expect(objects.some((o) => o.kind === 'Service' && o.metadata.name === componentName('ingestion'))).toBe(false);
  });

  it('leaves a component out entirely when it is disabled', async () => {
    const objects = await render({ values: { writer: { enabled: false } } });
    expect(objects.filter((o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'writer')).toEqual([]);
    const pod = objects.find((o) => o.kind === 'Pod');
    expect(Pod.is(pod) && pod.spec?.containers[0]?.command?.some((arg) => arg.includes('writer'))).toBe(false);
  });
});
