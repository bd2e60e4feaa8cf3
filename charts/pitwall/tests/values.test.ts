import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHART_DIR, ENVIRONMENTS, template, valuesFile } from './support/chart.js';
import { schema, valueSettings } from './support/values-docs.js';

/** Settings without a comment above them saying what they are. */
function undocumentedKeys(file: string): string[] {
  return valueSettings(file)
    .filter((setting) => setting.comment.length < 3)
    .map((setting) => setting.key);
}

describe('values.yaml and the environment files', () => {
  it.each(['values.yaml', ...ENVIRONMENTS.map((e) => `values-${e}.yaml`)])(
    'documents every setting in %s with a comment above it',
    (file) => {
      expect(undocumentedKeys(join(CHART_DIR, file))).toEqual([]);
    },
  );

  it('describes every setting of values.yaml in the schema (which forbids unknown keys)', async () => {
    const result = await template({});
    expect(result.code, result.stderr).toBe(0);
    expect(schema.additionalProperties).toBe(false);
  });
});

/** Values that must be refused, and a fragment of helm's message that names the problem. */
const INVALID: [string, Record<string, unknown>, RegExp][] = [
  ['an unknown top-level key', { replicas: 3 }, /additional propert(y|ies) .*replicas/i],
  ['a misspelt component setting', { ingestion: { replicaCont: 2 } }, /replicaCont/],
  ['a replica count that is text', { writer: { replicaCount: 'two' } }, /replicaCount/],
  ['an unknown externalTrafficPolicy', { ingestion: { service: { externalTrafficPolicy: 'Sometimes' } } }, /externalTrafficPolicy/],
  ['a service with neither TCP nor UDP', { ingestion: { service: { tcp: { enabled: false }, udp: { enabled: false } } } }, /service/],
  ['a log level services refuse', { config: { logLevel: 'verbose' } }, /logLevel/],
  ['a stream key with braces (it would break the shard hash tag)', { config: { streamKey: 'pitwall:{x}' } }, /streamKey/],
  ['zero shards', { config: { streamShards: 0 } }, /streamShards/],
  ['no Secret at all', { secrets: { existingSecret: '', create: false } }, /existingSecret/],
  [
    'a created Secret without REDIS_URL',
    { secrets: { create: true, values: { databaseUrl: 'postgres://x/y', directusServiceToken: 't' } } },
    /redisUrl/,
  ],
  ['a REDIS_URL that is not a redis URL', { secrets: { create: true, values: { redisUrl: 'http://redis:6379' } } }, /redisUrl/],
  ['an image digest that is not sha256', { writer: { image: { digest: 'latest' } } }, /digest/],
  ['an extra env name in lower case', { liveGateway: { env: { gateway_port: '1' } } }, /gateway_port|env/],
  ['a KEDA address given as a URL', { writer: { autoscaling: { redisAddress: 'redis://redis:6379' } } }, /redisAddress/],
  ['a Directus URL without scheme', { liveGateway: { directusUrl: 'directus:8055' } }, /directusUrl/],
  ['a scrape interval that is not a duration', { monitoring: { serviceMonitor: { interval: 'often' } } }, /interval/],
  ['a lag ratio above 1', { monitoring: { prometheusRule: { writerLagMaxlenRatio: 1.5 } } }, /writerLagMaxlenRatio/],
  [
    'a grace period shorter than preStop + shutdown',
    { liveGateway: { terminationGracePeriodSeconds: 25 } },
    /terminationGracePeriodSeconds/,
  ],
  [
    'a writer grace period equal to its shutdown timeout',
    { writer: { terminationGracePeriodSeconds: 20 } },
    /terminationGracePeriodSeconds/,
  ],
  ['an HPA whose minimum exceeds its maximum', { liveGateway: { autoscaling: { minReplicas: 5, maxReplicas: 2 } } }, /minReplicas/],
  [
    'an ingestion grace period that the preStop sleep eats into',
    { ingestion: { preStopSleepSeconds: 20, drainTimeoutSeconds: 10, terminationGracePeriodSeconds: 35 } },
    /ingestion.terminationGracePeriodSeconds/,
  ],
  [
    'a connections target a pod refuses before reaching',
    { liveGateway: { env: { GATEWAY_MAX_CONNECTIONS: '4000' }, autoscaling: { targetConnectionsPerPod: 4000 } } },
    /targetConnectionsPerPod/,
  ],
  ['an HTTPRoute attached to no Gateway', { liveGateway: { httpRoute: { enabled: true } } }, /parentRefs/],
  [
    'an HTTPRoute timeout that is not a Gateway API duration',
    { liveGateway: { httpRoute: { requestTimeout: '1 hour' } } },
    /requestTimeout/,
  ],
  [
    'an authorization ratio above 1',
    { monitoring: { prometheusRule: { authorizationUnavailableRatio: 2 } } },
    /authorizationUnavailableRatio/,
  ],
  [
    'a spreading policy Kubernetes does not know',
    {
      writer: {
        topologySpreadConstraints: [
          { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'DoNotSchedule', nodeTaintsPolicy: 'Sometimes' },
        ],
      },
    },
    /nodeTaintsPolicy/,
  ],
];

describe('values the chart refuses', () => {
  it.each(INVALID)('refuses %s', async (_what, values, message) => {
    const result = await template({ values });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });

  it('accepts the same kind of change when it is valid (the cases above fail for their reason only)', async () => {
    const result = await template({
      values: {
        ingestion: {
          replicaCount: 3,
          service: { externalTrafficPolicy: 'Cluster', udp: { enabled: false } },
          preStopSleepSeconds: 20,
          drainTimeoutSeconds: 10,
          terminationGracePeriodSeconds: 41,
        },
        writer: { image: { digest: `sha256:${'a'.repeat(64)}` }, autoscaling: { redisAddress: 'redis:6380' } },
        liveGateway: {
          env: { GATEWAY_MAX_CONNECTIONS: '10' },
          terminationGracePeriodSeconds: 31,
          autoscaling: { minReplicas: 2, maxReplicas: 2, targetConnectionsPerPod: 9 },
          httpRoute: { enabled: true, parentRefs: [{ name: 'public', namespace: 'gateway-system' }], requestTimeout: '1h' },
        },
        config: { logLevel: 'warn', streamShards: 2 },
        monitoring: { prometheusRule: { writerLagMaxlenRatio: 1, authorizationUnavailableRatio: 1 } },
      },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('@sha256:aaaa');
  });

  it('accepts every environment file', async () => {
    for (const environment of ENVIRONMENTS) {
      const result = await template({ valuesFiles: [valuesFile(environment)] });
      expect(result.code, `${environment}: ${result.stderr}`).toBe(0);
    }
  });
});
