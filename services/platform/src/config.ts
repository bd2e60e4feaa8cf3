import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './config-error.js';

// One typed schema per service, built from these shared pieces, validated once at start-up.
// Keys of a schema are the environment variable names, so an error names the variable.

export type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** An environment variable read as an integer within bounds. */
export function intVar(defaultValue: number, min: number, max: number) {
  return z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be >= ${min}`).max(max, `must be <= ${max}`))
    .default(defaultValue);
}

/** An environment variable read as a decimal number within bounds. */
export function numberVar(defaultValue: number, min: number, max: number) {
  return z
    .string()
    .trim()
    .regex(/^-?\d+(\.\d+)?$/, 'must be a number')
    .transform(Number)
    .pipe(z.number().min(min, `must be >= ${min}`).max(max, `must be <= ${max}`))
    .default(defaultValue);
}

export function portVar(defaultValue: number) {
  return intVar(defaultValue, 0, 65535);
}

export function boolVar(defaultValue: boolean) {
  return z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
    .transform((v) => v === 'true' || v === '1' || v === 'yes')
    .default(defaultValue);
}

/** A URL with one of the given protocols (without the colon). */
export function urlVar(protocols: readonly string[], defaultValue?: string, path?: { pattern: RegExp; message: string }) {
  const parse = (value: string) => {
    try {
      return new URL(value);
    } catch {
      return undefined;
    }
  };
  const schema = z
    .string()
    .trim()
    .refine(
      (value) => {
        const url = parse(value);
        return url !== undefined && protocols.includes(url.protocol.slice(0, -1)) && url.host.length > 0;
      },
      { message: `must be a ${protocols.map((p) => `${p}://`).join(' or ')} URL` },
    )
    .refine((value) => path === undefined || path.pattern.test(parse(value)?.pathname ?? ''), { message: path?.message ?? '' });
  return defaultValue === undefined ? schema : schema.default(defaultValue);
}

/** A comma-separated list; empty when unset. */
export function listVar() {
  return z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    );
}

/** A Redis Cluster seed node (REDIS_CLUSTER_NODES). */
export interface RedisClusterNode {
  host: string;
  port: number;
}

const CLUSTER_NODE = /^(?:(rediss?):\/\/)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

/**
 * REDIS_CLUSTER_NODES: comma-separated `host:port` seed nodes (`rediss://host:port` for TLS, then on
 * every node). Empty when unset: standalone Redis at REDIS_URL.
 */
export function clusterNodesVar() {
  return z
    .string()
    .default('')
    .transform((value, ctx) => {
      const nodes: RedisClusterNode[] = [];
      const schemes = new Set<string>();
      for (const item of value.split(',').map((s) => s.trim())) {
        if (item === '') continue;
        const match = CLUSTER_NODE.exec(item);
        const port = Number(match?.[3]);
        if (match === null || port < 1 || port > 65535) {
          ctx.addIssue({ code: 'custom', message: `must be comma-separated host:port seed nodes ("${item}" is not)` });
          return z.NEVER;
        }
        schemes.add(match[1] ?? 'redis');
        nodes.push({ host: (match[2] as string).replace(/^\[(.*)\]$/, '$1'), port });
      }
      if (schemes.size > 1) {
        ctx.addIssue({ code: 'custom', message: 'must use TLS (rediss://) on every seed node or on none' });
        return z.NEVER;
      }
      return { nodes, tls: schemes.has('rediss') };
    });
}

/** Variables every service reads (docs/interfaces.md). */
export const commonEnv = {
  // The path is the database number (redis://host:6379/2); anything else would fail every connection.
  REDIS_URL: urlVar(['redis', 'rediss'], 'redis://127.0.0.1:6379', {
    pattern: /^(\/\d*)?$/,
    message: 'its path must be a database number, like /0',
  }),
  // Set: Redis Cluster mode (REDIS_URL is not used); credentials for it in REDIS_USERNAME / REDIS_PASSWORD.
  REDIS_CLUSTER_NODES: clusterNodesVar(),
  REDIS_USERNAME: z.string().optional(),
  REDIS_PASSWORD: z.string().optional(),
  STREAM_KEY: z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .regex(/^[^\s{}]+$/, 'must not contain spaces or braces')
    .default('pitwall:positions'),
  STREAM_SHARDS: intVar(1, 1, 1024),
  METRICS_PORT: portVar(9464),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
};

/** INSTANCE_ID: the pod name in Kubernetes, the host name elsewhere. */
export const instanceIdEnv = {
  INSTANCE_ID: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9._-]{1,200}$/, 'must be 1-200 characters of letters, digits, dot, underscore or dash')
    .default(() => hostname()),
};

/**
 * Validates `env` against `shape`. Throws ConfigError naming every bad variable. Empty strings count
 * as unset, so `FOO=` falls back to the default like a missing variable.
 */
export function parseConfig<S extends z.ZodRawShape>(shape: S, env: Env = process.env): z.infer<z.ZodObject<S>> {
  const input: Record<string, string> = {};
  for (const key of Object.keys(shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const result = z.object(shape).safeParse(input);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => ({
      variable: String(issue.path[0] ?? '(environment)'),
      message: issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message,
    })),
  );
}

/** parseConfig for a service's main(): on error, prints each bad variable and exits with code 78 (EX_CONFIG). */
export function loadConfig<S extends z.ZodRawShape>(service: string, shape: S, env: Env = process.env): z.infer<z.ZodObject<S>> {
  try {
    return parseConfig(shape, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) {
      process.stderr.write(`${service}: invalid configuration: ${problem.variable} ${problem.message}\n`);
    }
    process.exit(78);
  }
}

export { z };
