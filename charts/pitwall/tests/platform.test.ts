import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { liveGatewayEnv } from '../../../services/live-gateway/src/config.js';
import { parseConfig } from '@pitwall/platform';
import {
  componentName,
  COMPONENTS,
  ENVIRONMENTS,
  find,
  parseObjects,
  render,
  renderEnvironment,
  REPO_ROOT,
  type Environment,
  type KubeObject,
} from './support/chart.js';
import {
  HorizontalPodAutoscaler,
  HTTPRoute,
  NetworkPolicy,
  Pod,
  PrometheusRule,
  Service,
  ServiceMonitor,
  validateObject,
} from './support/models.js';
import { configMapData, deployment, deployments, mainContainer, podSpec, selects } from './support/objects.js';

/**
 * What the chart needs from a real cluster's platform, and what the platform needs from it:
 * kube-prometheus-stack (selectors, dashboard sidecar), prometheus-adapter (the gateway's connections
 * metric), the AWS Load Balancer Controller (readiness gates), the Gateway API. k8s/platform/ holds the
 * platform's side; these tests hold the two sides together.
 */

const PLATFORM = join(REPO_ROOT, 'k8s/platform');
const stackValues = parse(readFileSync(join(PLATFORM, 'kube-prometheus-stack.values.yaml'), 'utf8')) as {
  prometheus: { prometheusSpec: { serviceMonitorSelectorNilUsesHelmValues: boolean; ruleSelectorNilUsesHelmValues: boolean } };
  grafana: {
    sidecar: {
      dashboards: { label: string; labelValue: string; folderAnnotation: string; provider: { foldersFromFilesStructure: boolean } };
    };
  };
};
const adapterValues = parse(readFileSync(join(PLATFORM, 'prometheus-adapter.values.yaml'), 'utf8')) as {
  rules: { custom: { seriesQuery: string; name: { as: string } }[] };
};
// The install command in the file's header names the release; kube-prometheus-stack selects `release: <that name>`.
const STACK_RELEASE = /helm upgrade --install (\S+) prometheus-community\/kube-prometheus-stack/.exec(
  readFileSync(join(PLATFORM, 'kube-prometheus-stack.values.yaml'), 'utf8'),
)?.[1];

const rendered = new Map<Environment | 'default', KubeObject[]>();
function objectsOf(variant: Environment | 'default'): KubeObject[] {
  const objects = rendered.get(variant);
  if (objects === undefined) throw new Error(`${variant} not rendered`);
  return objects;
}

beforeAll(async () => {
  rendered.set('default', await render());
  for (const environment of ENVIRONMENTS) rendered.set(environment, await renderEnvironment(environment));
}, 120_000);

describe('kube-prometheus-stack', () => {
  it('selects the staging and prod ServiceMonitors and PrometheusRule by its release label (default values alone: not)', () => {
    expect(STACK_RELEASE).toBe('kube-prometheus-stack');
    expect(stackValues.prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues).toBe(true);
    expect(stackValues.prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues).toBe(true);
    const selector = { release: STACK_RELEASE ?? '' };
    for (const variant of ['staging', 'prod', 'default'] as const) {
      const monitoring = objectsOf(variant).filter((o) => ServiceMonitor.is(o) || PrometheusRule.is(o));
      expect(monitoring.length).toBe(COMPONENTS.length + 1);
      for (const object of monitoring)
        expect(selects(selector, object.metadata.labels ?? {}), `${variant} ${object.kind}`).toBe(variant !== 'default');
    }
  });

  it('files every dashboard in the folder its sidecar is told to read, from the label it watches', () => {
    const sidecar = stackValues.grafana.sidecar.dashboards;
    expect(sidecar.provider.foldersFromFilesStructure).toBe(true);
    const dashboards = objectsOf('prod').filter((o) => o.kind === 'ConfigMap' && o.metadata.name.includes('-dashboard-'));
    expect(dashboards.length).toBeGreaterThanOrEqual(4);
    for (const map of dashboards) {
      expect(map.metadata.labels?.[sidecar.label], map.metadata.name).toBe(sidecar.labelValue);
      expect(map.metadata.annotations?.[sidecar.folderAnnotation], map.metadata.name).toBe('Pitwall');
    }
  });

  it('puts the folder under whatever annotation key the values name', async () => {
    const objects = await render({
      values: { monitoring: { dashboards: { folderAnnotation: 'k8s-sidecar-target-directory', folder: 'Race' } } },
    });
    const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.includes('-dashboard-'));
    expect(map?.metadata.annotations).toEqual({ 'k8s-sidecar-target-directory': 'Race' });
  });
});

describe('ingestion behind a network load balancer', () => {
  it('labels the namespace for the AWS Load Balancer Controller’s pod readiness gate (prod: an NLB with ip targets)', () => {
    const [namespace] = parseObjects(readFileSync(join(REPO_ROOT, 'k8s/cluster/namespace.yaml'), 'utf8'));
    expect(namespace?.metadata.labels?.['elbv2.k8s.aws/pod-readiness-gate-inject']).toBe('enabled');
    const service = find(objectsOf('prod'), 'Service', componentName('ingestion'));
    expect(service.metadata.annotations?.['service.beta.kubernetes.io/aws-load-balancer-nlb-target-type']).toBe('ip');
  });

  it.each(['default', ...ENVIRONMENTS] as const)('keeps accepting devices for a preStop sleep within the grace period (%s)', (variant) => {
    const objects = objectsOf(variant);
    const d = deployment(objects, componentName('ingestion'));
    const command = mainContainer(d).lifecycle?.preStop?.exec?.command ?? [];
    expect(command[0]).toBe('sleep');
    const sleep = Number(command[1]);
    expect(sleep).toBeGreaterThanOrEqual(variant === 'dev' ? 1 : 10);
    const drainSeconds = Number(configMapData(objects, componentName('ingestion')).INGESTION_DRAIN_TIMEOUT_MS) / 1000;
    // The service's hard shutdown limit is its drain timeout + 10 s (services/ingestion/src/main.ts).
    expect(podSpec(d).terminationGracePeriodSeconds).toBeGreaterThan(sleep + drainSeconds + 10);
  });
});

describe('scheduling in prod', () => {
  it('never puts two pods of a component on one node while another node has none (hostname DoNotSchedule)', () => {
    for (const d of deployments(objectsOf('prod'))) {
      const name = d.metadata?.name ?? '';
      const hostname = podSpec(d).topologySpreadConstraints?.find((c) => c.topologyKey === 'kubernetes.io/hostname');
      expect(hostname?.whenUnsatisfiable, name).toBe('DoNotSchedule');
      // Nodes the pods may not run on (taints) must not count as empty domains, or scheduling stops at one pod per node.
      expect(hostname?.nodeTaintsPolicy, name).toBe('Honor');
      expect(hostname?.matchLabelKeys, name).toEqual(['pod-template-hash']);
      expect(selects(hostname?.labelSelector?.matchLabels, d.spec?.template.metadata?.labels ?? {}), name).toBe(true);
    }
  });
});

describe('live gateway autoscaling', () => {
  it.each(['default', 'staging', 'prod'] as const)(
    'scales on connections per pod beside CPU, below the pod’s connection limit (%s)',
    (variant) => {
      const objects = objectsOf(variant);
      const hpa = find(objects, 'HorizontalPodAutoscaler', componentName('live-gateway'));
      if (!HorizontalPodAutoscaler.is(hpa)) throw new Error('not an HPA');
      const metrics = hpa.spec?.metrics ?? [];
      expect(metrics.map((m) => m.type).sort()).toEqual(['Pods', 'Resource']);
      const pods = metrics.find((m) => m.type === 'Pods')?.pods;
      // The metric the platform's prometheus-adapter serves (the metrics test checks the gateway exports it).
      expect(adapterValues.rules.custom.map((rule) => rule.name.as)).toContain(pods?.metric.name);
      expect(pods?.target.type).toBe('AverageValue');
      const target = Number(pods?.target.averageValue);
      const gatewayEnv = configMapData(objects, componentName('live-gateway'));
      const limit = parseConfig(liveGatewayEnv, { DIRECTUS_SERVICE_TOKEN: 'x', ...gatewayEnv }).GATEWAY_MAX_CONNECTIONS;
      expect(target).toBeGreaterThan(0);
      expect(target).toBeLessThan(limit);
    },
  );
});

describe('Gateway API', () => {
  const values = {
    liveGateway: {
      httpRoute: {
        enabled: true,
        parentRefs: [{ name: 'public', namespace: 'gateway-system', sectionName: 'https' }],
        hostnames: ['live.pitwall.example'],
      },
      ingress: { className: 'internal-nginx' },
    },
    networkPolicy: { httpRouteFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'envoy-gateway-system' } } }] },
  };

  it('routes /live to the WebSocket Service port through the configured Gateway, with the request timeout off', async () => {
    const objects = await render({ values });
    const route = find(objects, 'HTTPRoute', componentName('live-gateway'));
    validateObject(route);
    if (!HTTPRoute.is(route)) throw new Error('not an HTTPRoute');
    expect(route.spec?.parentRefs).toEqual(values.liveGateway.httpRoute.parentRefs);
    expect(route.spec?.hostnames).toEqual(['live.pitwall.example']);
    const [rule] = route.spec?.rules ?? [];
    expect(rule?.matches?.[0]?.path).toEqual({ type: 'PathPrefix', value: '/live' });
    expect(rule?.timeouts?.request).toBe('0s');
    const backend = rule?.backendRefs?.[0];
    const service = find(objects, 'Service', backend?.name ?? '');
    expect(Service.is(service) && service.spec?.ports?.find((p) => p.port === backend?.port)?.name).toBe('websocket');
    // The Ingress stays beside it, with the class the values name.
    expect((find(objects, 'Ingress', componentName('live-gateway')).spec as { ingressClassName?: string }).ingressClassName).toBe(
      'internal-nginx',
    );
  });

  it('lets the Gateway’s data plane through the gateway’s NetworkPolicy only while the route is enabled', async () => {
    const peerOf = (objects: KubeObject[]) => {
      const policy = find(objects, 'NetworkPolicy', componentName('live-gateway'));
      if (!NetworkPolicy.is(policy)) throw new Error('not a NetworkPolicy');
      const rule = policy.spec?.ingress?.find((r) => r.ports?.some((p) => p.port === 'websocket'));
      return (rule?.from ?? []).map((peer) => peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name']);
    };
    expect(peerOf(await render({ values }))).toEqual(['ingress-nginx', 'envoy-gateway-system']);
    expect(peerOf(objectsOf('default'))).toEqual(['ingress-nginx']);
    expect(objectsOf('default').some((o) => o.kind === 'HTTPRoute')).toBe(false);
  });
});

describe('images', () => {
  it('pins the helm test image by digest', () => {
    const pod = objectsOf('prod').find((o) => Pod.is(o));
    if (!Pod.is(pod)) throw new Error('no helm test pod');
    expect(pod.spec?.containers[0]?.image).toMatch(/^curlimages\/curl:[\w.-]+@sha256:[0-9a-f]{64}$/);
  });
});
