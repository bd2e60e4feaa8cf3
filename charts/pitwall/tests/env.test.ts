import { ingestionConfigProblems, ingestionEnv } from '@pitwall/ingestion';
import { liveGatewayEnv } from '@pitwall/live-gateway';
import { parseConfig } from '@pitwall/platform';
import { writerEnv } from '@pitwall/writer';
import { beforeAll, describe, expect, it } from 'vitest';
import { COMPONENTS, componentName, ENVIRONMENTS, render, renderEnvironment, type Component, type KubeObject } from './support/chart.js';
import { containerEnvironment, deployment, mainContainer, podSpec } from './support/objects.js';

/**
 * The chart against the services' own configuration schemas (the `<name>Env` shapes whose keys are the
 * environment variable names): every variable the chart sets is one the service reads, every variable
 * the service requires is set, and the values the chart sets pass the service's validation.
 */

/** What the tests need of a schema: parsing one variable (zod's safeParse). */
type Shape = Record<string, { safeParse(value: unknown): { success: boolean } }>;

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

beforeAll(async () => {
  await Promise.all(
    VARIANTS.map(async (v) => {
      rendered.set(v, v === 'default' ? await render() : await renderEnvironment(v));
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

describe('checks that can fail', () => {
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
