import { ingestionConfigProblems, ingestionEnv } from '@pitwall/ingestion';
import { liveGatewayEnv } from '@pitwall/live-gateway';
import { parseConfig } from '@pitwall/platform';
import { writerEnv } from '@pitwall/writer';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isMap, isScalar, parseAllDocuments, visit } from 'yaml';
import {
  CHART_DIR,
  COMPONENTS,
  componentName,
  ENVIRONMENTS,
  parseObjects,
  render,
  template,
  valuesFile,
  type Component,
  type KubeObject,
  type RenderOptions,
} from './support/chart.js';
import { configMapData, containerEnvironment, deployment, mainContainer, podSpec } from './support/objects.js';
import { schemaAt, valueSettings, type SchemaNode } from './support/values-docs.js';

/**
 * The chart against the services' own configuration schemas (the `<name>Env` shapes whose keys are the
 * environment variable names): every variable the chart sets is one the service reads, every variable
 * the service requires is set, and the values the chart sets pass the service's validation.
 */

/** What the tests need of a schema: parsing one variable (zod's safeParse). */
type Shape = Record<string, { safeParse(value: unknown): { success: boolean; data?: unknown } }>;

const SHAPES: Record<Component, Shape> = {
  ingestion: ingestionEnv,
  writer: writerEnv,
  'live-gateway': liveGatewayEnv,
};

/** Read by the OpenTelemetry SDK itself (platform Tracing), not by a service schema. */
const isOtelVariable = (name: string) => name.startsWith('OTEL_');

/** Stand-ins for values only known in the cluster (Secret keys, the downward API), valid for the schemas. */
const CLUSTER_VALUES: Record<string, string> = {
  REDIS_URL: 'redis://:password@redis.data:6379/0',
  REDIS_PASSWORD: 'redis-cluster-password',
  DATABASE_URL: 'postgres://pitwall:password@postgres.data:5432/pitwall',
  DIRECTUS_SECRET: 'directus-signing-secret-of-at-least-32-bytes',
  DIRECTUS_SERVICE_TOKEN: 'directus-static-token',
  INSTANCE_ID: 'pitwall-live-gateway-6f7c9d8b5-x2x7q',
};

function requiredVariables(shape: Shape): string[] {
  return Object.entries(shape)
    .filter(([, schema]) => !schema.safeParse(undefined).success)
    .map(([name]) => name);
}

/** The environment a component's container gets, with cluster-only values filled in. */
function environmentOf(objects: readonly KubeObject[], component: Component): { names: string[]; env: Record<string, string> } {
  const variables = containerEnvironment(objects, mainContainer(deployment(objects, componentName(component))));
  const env: Record<string, string> = {};
  for (const [name, { value, source }] of variables) {
    const filled = value ?? CLUSTER_VALUES[name];
    if (filled === undefined) throw new Error(`${component}: no stand-in value for ${name} from ${source}`);
    env[name] = filled;
  }
  return { names: [...variables.keys()].sort(), env };
}

/** The service's hard shutdown limit in ms, as its main.ts computes it from the parsed config. */
function shutdownTimeoutMs(component: Component, env: Record<string, string>): number {
  if (component === 'ingestion') return parseConfig(ingestionEnv, env).INGESTION_DRAIN_TIMEOUT_MS + 10_000;
  if (component === 'writer') return parseConfig(writerEnv, env).WRITER_SHUTDOWN_TIMEOUT_MS;
  return parseConfig(liveGatewayEnv, env).GATEWAY_SHUTDOWN_TIMEOUT_MS;
}

const VARIANTS = ['default', ...ENVIRONMENTS] as const;
const rendered = new Map<string, KubeObject[]>();
/** The text helm printed for each variant (what a YAML parser's objects no longer show, e.g. a repeated key). */
const renderedText = new Map<string, string>();

/** `helm template` text, failing with helm's message when rendering fails. */
async function renderText(options: RenderOptions = {}): Promise<string> {
  const result = await template(options);
  if (result.code !== 0) throw new Error(`helm template failed (${result.code}):\n${result.stderr}`);
  return result.stdout;
}

beforeAll(async () => {
  await Promise.all(
    VARIANTS.map(async (v) => {
      const text = await renderText(v === 'default' ? {} : { valuesFiles: [valuesFile(v)] });
      renderedText.set(v, text);
      rendered.set(v, parseObjects(text));
    }),
  );
}, 120_000);

function objectsOf(variant: string): KubeObject[] {
  const objects = rendered.get(variant);
  if (objects === undefined) throw new Error(`${variant} not rendered`);
  return objects;
}

describe.each(VARIANTS)('environment variables with the %s values', (variant) => {
  it.each(COMPONENTS)('sets for %s only variables the service reads', (component) => {
    const shape = SHAPES[component];
    const { names } = environmentOf(objectsOf(variant), component);
    const unknown = names.filter((name) => !(name in shape) && !isOtelVariable(name));
    expect(unknown).toEqual([]);
  });

  it.each(COMPONENTS)('sets for %s every variable the service requires, with values it accepts', (component) => {
    const shape = SHAPES[component];
    const { names, env } = environmentOf(objectsOf(variant), component);
    for (const required of requiredVariables(shape)) expect(names, `${component} requires ${required}`).toContain(required);
    const parse = {
      ingestion: () => parseConfig(ingestionEnv, env),
      writer: () => parseConfig(writerEnv, env),
      'live-gateway': () => parseConfig(liveGatewayEnv, env),
    };
    expect(parse[component]).not.toThrow();
    if (component === 'ingestion') expect(ingestionConfigProblems(parseConfig(ingestionEnv, env))).toEqual([]);
  });

  it.each(COMPONENTS)('gives %s a termination grace period longer than its own shutdown (plus the preStop sleep)', (component) => {
    const objects = objectsOf(variant);
    const d = deployment(objects, componentName(component));
    const { env } = environmentOf(objects, component);
    const preStop = Number(mainContainer(d).lifecycle?.preStop?.exec?.command?.[1] ?? 0);
    const grace = podSpec(d).terminationGracePeriodSeconds ?? 30;
    expect(grace * 1000).toBeGreaterThan(preStop * 1000 + shutdownTimeoutMs(component, env));
  });

  it('agrees across components on the stream every one of them reads', () => {
    const streams = COMPONENTS.map((c) => {
      const { env } = environmentOf(objectsOf(variant), c);
      return `${env.STREAM_KEY ?? '?'} x${env.STREAM_SHARDS ?? '?'}`;
    });
    expect(new Set(streams).size).toBe(1);
  });

  it('serves the ports the chart wires Services and probes to', () => {
    const objects = objectsOf(variant);
    for (const component of COMPONENTS) {
      const container = mainContainer(deployment(objects, componentName(component)));
      const { env } = environmentOf(objects, component);
      const ports = new Map((container.ports ?? []).map((p) => [p.name ?? '', p.containerPort]));
      expect(ports.get('metrics'), component).toBe(Number(env.METRICS_PORT));
      if (component === 'ingestion') {
        const config = parseConfig(ingestionEnv, env);
        expect(ports.get('teltonika-tcp')).toBe(config.INGESTION_TCP_PORT);
        expect(ports.get('teltonika-udp')).toBe(config.INGESTION_UDP_PORT);
      }
      if (component === 'live-gateway') expect(ports.get('websocket')).toBe(parseConfig(liveGatewayEnv, env).GATEWAY_PORT);
    }
  });
});

/** The values.yaml section of each component. */
const SECTIONS: Record<Component, string> = { ingestion: 'ingestion', writer: 'writer', 'live-gateway': 'liveGateway' };

/**
 * Chart values that set one integer variable of their service unchanged (no unit conversion): the
 * schema describes each with the variable's name and must have the service's bounds (its intVar), the
 * default must be the service's, and the component's ConfigMap must pass the value to the variable.
 */
const DIRECT_VALUES: readonly (readonly [Component, string, string])[] = [
  ['ingestion', 'ingestion.streamMaxlen', 'STREAM_MAXLEN'],
  ['ingestion', 'ingestion.liveStreamMaxlen', 'INGESTION_LIVE_STREAM_MAXLEN'],
  ['ingestion', 'ingestion.deadLetterMaxlen', 'INGESTION_DEAD_LETTER_MAXLEN'],
  ['ingestion', 'ingestion.maxFutureMs', 'INGESTION_MAX_FUTURE_MS'],
  ['ingestion', 'ingestion.maxFrameBytes', 'INGESTION_MAX_FRAME_BYTES'],
  ['ingestion', 'ingestion.handshakeTimeoutMs', 'INGESTION_HANDSHAKE_TIMEOUT_MS'],
  ['ingestion', 'ingestion.frameTimeoutMs', 'INGESTION_FRAME_TIMEOUT_MS'],
  ['ingestion', 'ingestion.maxConnectionsPerAddress', 'INGESTION_MAX_CONNECTIONS_PER_ADDRESS'],
  ['ingestion', 'ingestion.minReplicas', 'INGESTION_MIN_REPLICAS'],
  ['ingestion', 'ingestion.replicaTimeoutMs', 'INGESTION_REPLICA_TIMEOUT_MS'],
  ['writer', 'writer.batchMaxBytes', 'WRITER_BATCH_MAX_BYTES'],
  ['writer', 'writer.deadLetterMaxlen', 'WRITER_DEAD_LETTER_MAXLEN'],
  ['writer', 'writer.trimIntervalMs', 'WRITER_TRIM_INTERVAL_MS'],
  ['live-gateway', 'liveGateway.history.seconds', 'GATEWAY_HISTORY_SECONDS'],
  ['live-gateway', 'liveGateway.history.maxBytes', 'GATEWAY_HISTORY_MAX_BYTES'],
  ['live-gateway', 'liveGateway.warmMaxBytes', 'GATEWAY_WARM_MAX_BYTES'],
  ['live-gateway', 'liveGateway.maxFutureMs', 'GATEWAY_MAX_FUTURE_MS'],
  ['live-gateway', 'liveGateway.batchWindowMs', 'GATEWAY_BATCH_WINDOW_MS'],
  ['live-gateway', 'liveGateway.drainReconnectsPerSecond', 'GATEWAY_DRAIN_RECONNECTS_PER_SECOND'],
  ['live-gateway', 'liveGateway.resumeWaitMs', 'GATEWAY_RESUME_WAIT_MS'],
  ['live-gateway', 'liveGateway.warmTailEntries', 'GATEWAY_WARM_TAIL_ENTRIES'],
];

/** Where the schema's bounds of a value differ from what the service accepts (each bound accepted, one beyond it refused). */
function boundProblems(node: SchemaNode | undefined, variable: string, shape: Shape): string[] {
  const schema = shape[variable];
  if (schema === undefined) return [`the service reads no ${variable}`];
  if (node === undefined) return ['no schema'];
  const accepts = (n: number) => schema.safeParse(String(n)).success;
  const problems: string[] = [];
  if (node.type !== 'integer') problems.push(`type ${String(node.type)}, not integer`);
  if (node.description !== variable) problems.push(`description ${String(node.description)}, not ${variable}`);
  if (node.minimum === undefined) problems.push('no minimum');
  else if (!accepts(node.minimum)) problems.push(`the service refuses the minimum ${node.minimum}`);
  else if (accepts(node.minimum - 1)) problems.push(`the service accepts ${node.minimum - 1}, below the minimum`);
  if (node.maximum === undefined) problems.push('no maximum');
  else if (!accepts(node.maximum)) problems.push(`the service refuses the maximum ${node.maximum}`);
  else if (accepts(node.maximum + 1)) problems.push(`the service accepts ${node.maximum + 1}, above the maximum`);
  return problems;
}

/** A values override setting the dotted key. */
function valuesWith(key: string, value: number, into: Record<string, unknown> = {}): Record<string, unknown> {
  const parts = key.split('.');
  let node = into;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    node[part] = typeof next === 'object' && next !== null ? next : {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts.at(-1) as string] = value;
  return into;
}

describe('chart values that set one service variable each', () => {
  const defaults = new Map(valueSettings(join(CHART_DIR, 'values.yaml')).map((s) => [s.key, s.value]));

  it('lists every integer value whose schema names a variable of its service', () => {
    const listed = new Set(DIRECT_VALUES.map(([, key]) => key));
    const unlisted = COMPONENTS.flatMap((component) =>
      [...defaults.keys()].filter((key) => {
        const node = schemaAt(key);
        const named = node?.description !== undefined && node.description in SHAPES[component];
        return key.startsWith(`${SECTIONS[component]}.`) && node?.type === 'integer' && named && !listed.has(key);
      }),
    );
    expect(unlisted).toEqual([]);
  });

  it.each(DIRECT_VALUES)('%s: %s has the bounds of %s in the schema', (component, key, variable) => {
    expect(boundProblems(schemaAt(key), variable, SHAPES[component])).toEqual([]);
  });

  it.each(DIRECT_VALUES)('%s: %s defaults to what %s defaults to', (component, key, variable) => {
    const serviceDefault = SHAPES[component][variable]?.safeParse(undefined).data;
    expect(serviceDefault).toBeTypeOf('number');
    expect(defaults.get(key)).toBe(serviceDefault);
    expect(environmentOf(objectsOf('default'), component).env[variable]).toBe(String(serviceDefault));
  });

  it('passes each value to its variable (every one set at once, to a value of its own)', async () => {
    const values: Record<string, unknown> = {};
    const expected: [Component, string, number][] = [];
    for (const [index, [component, key, variable]] of DIRECT_VALUES.entries()) {
      const node = schemaAt(key);
      // Distinct values in bounds, none of them a default: a value wired to another's variable shows.
      let value = (node?.minimum ?? 0) + 1 + index;
      if (value === defaults.get(key)) value += DIRECT_VALUES.length;
      expect(value, key).toBeLessThanOrEqual(node?.maximum ?? Number.MAX_SAFE_INTEGER);
      valuesWith(key, value, values);
      expected.push([component, variable, value]);
    }
    const objects = await render({ values });
    for (const [component, variable, value] of expected) {
      const { env } = environmentOf(objects, component);
      expect(env[variable], `${component} ${variable}`).toBe(String(value));
    }
  });
});

/**
 * Keys that occur more than once in one mapping of a rendered object, as `<kind>/<name>: <key>`. Read from
 * the YAML text with duplicates allowed, so that a repeated key shows whatever the parser would make of it
 * (an error, or the last one winning).
 */
function repeatedKeys(text: string): string[] {
  const repeated: string[] = [];
  for (const document of parseAllDocuments(text, { uniqueKeys: false })) {
    const object: unknown = document.toJS();
    if (object === null || object === undefined) continue;
    const { kind, metadata } = object as Partial<KubeObject>;
    const label = `${kind ?? '?'}/${metadata?.name ?? '?'}`;
    visit(document, {
      Map(_, map) {
        if (!isMap(map)) return;
        const seen = new Set<string>();
        for (const pair of map.items) {
          const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
          if (seen.has(key)) repeated.push(`${label}: ${key}`);
          seen.add(key);
        }
      },
    });
  }
  return repeated;
}

/** Values setting each component's `env` (the values.yaml sections). */
function envValues(env: Record<Component, Record<string, string>>): Record<string, unknown> {
  return Object.fromEntries(COMPONENTS.map((c) => [SECTIONS[c], { env: env[c] }]));
}

describe('env and the chart values that set the same variable', () => {
  it.each(VARIANTS)('renders no object with a repeated key with the %s values', (variant) => {
    expect(repeatedKeys(renderedText.get(variant) ?? '')).toEqual([]);
  });

  it("lets env win for every variable each ConfigMap sets from a value: one key each, with env's value", async () => {
    // Every key of a component's ConfigMap in the default render comes from a chart value; env sets each again.
    const env = Object.fromEntries(
      COMPONENTS.map((c) => {
        const names = Object.keys(configMapData(objectsOf('default'), componentName(c)));
        return [c, Object.fromEntries(names.map((name) => [name, `from-env-${name}`]))];
      }),
    ) as Record<Component, Record<string, string>>;
    expect(Object.keys(env.writer)).toContain('WRITER_TRIM_INTERVAL_MS');
    expect(Object.keys(env['live-gateway'])).toEqual(
      expect.arrayContaining(['GATEWAY_RESUME_WAIT_MS', 'GATEWAY_WARM_TAIL_ENTRIES', 'GATEWAY_CLIENT_ADDRESS_HEADER']),
    );
    const text = await renderText({ values: envValues(env) });
    expect(repeatedKeys(text)).toEqual([]);
    const objects = parseObjects(text);
    for (const component of COMPONENTS) expect(configMapData(objects, componentName(component)), component).toEqual(env[component]);
  });

  it('keeps the settings of an install that set variables in env before the chart had values for them', async () => {
    const env: Record<Component, Record<string, string>> = {
      ingestion: { STREAM_MAXLEN: '200000', INGESTION_MAX_CONNECTIONS_PER_ADDRESS: '50' },
      writer: { WRITER_TRIM_INTERVAL_MS: '15000', WRITER_PIPELINES: '2' },
      'live-gateway': {
        GATEWAY_RESUME_WAIT_MS: '500',
        GATEWAY_WARM_TAIL_ENTRIES: '2500',
        GATEWAY_CLIENT_ADDRESS_HEADER: 'x-forwarded-for',
      },
    };
    const text = await renderText({ values: envValues(env) });
    expect(repeatedKeys(text)).toEqual([]);
    const objects = parseObjects(text);
    for (const component of COMPONENTS) {
      const { env: container } = environmentOf(objects, component);
      for (const [name, value] of Object.entries(env[component])) expect(container[name], `${component} ${name}`).toBe(value);
    }
    expect(parseConfig(liveGatewayEnv, environmentOf(objects, 'live-gateway').env).GATEWAY_RESUME_WAIT_MS).toBe(500);
    expect(parseConfig(writerEnv, environmentOf(objects, 'writer').env).WRITER_TRIM_INTERVAL_MS).toBe(15_000);
  });
});

describe('checks that can fail', () => {
  it('notices a key repeated in a ConfigMap, which parsing into objects would hide or refuse', () => {
    const text = ['kind: ConfigMap', 'metadata:', '  name: x', 'data:', '  A: "1"', '  B: "2"', '  A: "3"', ''].join('\n');
    expect(repeatedKeys(text)).toEqual(['ConfigMap/x: A']);
    expect(repeatedKeys(text.replace('  A: "3"', '  C: "3"'))).toEqual([]);
  });

  it('notices a schema bound the service does not share', () => {
    const node: SchemaNode = { type: 'integer', description: 'GATEWAY_RESUME_WAIT_MS', minimum: 0, maximum: 60_000 };
    expect(boundProblems(node, 'GATEWAY_RESUME_WAIT_MS', liveGatewayEnv)).toEqual([]);
    expect(boundProblems({ ...node, minimum: 1 }, 'GATEWAY_RESUME_WAIT_MS', liveGatewayEnv)).toEqual([
      'the service accepts 0, below the minimum',
    ]);
    expect(boundProblems({ ...node, maximum: 60_001 }, 'GATEWAY_RESUME_WAIT_MS', liveGatewayEnv)).toEqual([
      'the service refuses the maximum 60001',
    ]);
  });

  it('notices a variable no service reads', async () => {
    const objects = await render({ values: { writer: { env: { WRITER_BATCH_SIZ: '10' } } } });
    const { names } = environmentOf(objects, 'writer');
    expect(names.filter((n) => !(n in writerEnv))).toEqual(['WRITER_BATCH_SIZ']);
  });

  it('notices a value the service would refuse at start-up', async () => {
    const objects = await render({ values: { liveGateway: { env: { GATEWAY_MAX_CONNECTIONS: 'lots' } } } });
    const { env } = environmentOf(objects, 'live-gateway');
    expect(() => parseConfig(liveGatewayEnv, env)).toThrow(/GATEWAY_MAX_CONNECTIONS/);
  });

  it('knows the gateway requires DIRECTUS_SERVICE_TOKEN', () => {
    expect(requiredVariables(liveGatewayEnv)).toEqual(['DIRECTUS_SERVICE_TOKEN']);
  });
});
