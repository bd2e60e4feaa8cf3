import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isMap, isScalar, isSeq, parseDocument, type Node, type Pair } from 'yaml';
import { CHART_DIR, ENVIRONMENTS, template, valuesFile } from './support/chart.js';

interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  $ref?: string;
  description?: string;
}

const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as SchemaNode & {
  definitions: Record<string, SchemaNode>;
};

function resolveRef(node: SchemaNode): SchemaNode {
  if (node.$ref === undefined) return node;
  const name = node.$ref.replace('#/definitions/', '');
  const target = schema.definitions[name];
  if (target === undefined) throw new Error(`unresolved $ref ${node.$ref}`);
  return resolveRef(target);
}

/**
 * Walks a values file: every key the schema declares as a property (a chart setting, not an entry of a
 * free-form map like annotations) must have a comment above it saying what it is.
 */
function undocumentedKeys(file: string): string[] {
  const document = parseDocument(readFileSync(file, 'utf8'));
  const missing: string[] = [];
  const walk = (node: Node | null, schemaNode: SchemaNode | undefined, path: string, inherited: string | null | undefined) => {
    if (!isMap(node) || schemaNode === undefined) return;
    const resolved = resolveRef(schemaNode);
    if (resolved.properties === undefined) return;
    for (const [index, pair] of (node.items as Pair<Node, Node>[]).entries()) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?';
      const child = resolved.properties[key];
      if (child === undefined) continue;
      // The yaml AST hangs the comment above a map's first key on the map (or the document) itself.
      const comment = pair.key.commentBefore ?? (index === 0 ? (node.commentBefore ?? inherited) : undefined);
      if (!comment || comment.trim().length < 3) missing.push(`${path}${key}`);
      if (!isSeq(pair.value)) walk(pair.value, child, `${path}${key}.`, undefined);
    }
  };
  walk(document.contents, schema, '', document.commentBefore);
  return missing;
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
        ingestion: { replicaCount: 3, service: { externalTrafficPolicy: 'Cluster', udp: { enabled: false } } },
        writer: { image: { digest: `sha256:${'a'.repeat(64)}` }, autoscaling: { redisAddress: 'redis:6380' } },
        liveGateway: {
          env: { GATEWAY_MAX_CONNECTIONS: '10' },
          terminationGracePeriodSeconds: 31,
          autoscaling: { minReplicas: 2, maxReplicas: 2 },
        },
        config: { logLevel: 'warn', streamShards: 2 },
        monitoring: { prometheusRule: { writerLagMaxlenRatio: 1 } },
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
