/**
 * What a failed Redis command means for the caller, from Redis's error prefix or the client's error:
 *
 * - `busygroup`: XGROUP CREATE of a group that exists (fine for whoever only wants it to exist);
 * - `nogroup`: the consumer group (or the stream) is gone: create it again, then retry;
 * - `no-such-key`: XINFO of a stream that does not exist (an empty shard);
 * - `moved` / `ask`: the slot lives on another node (the cluster client follows these itself; a
 *   connection of our own refreshes its routing and retries);
 * - `clusterdown`, `tryagain`, `loading`, `readonly`: the node or cluster is in transition (failover,
 *   resharding, restart, a demoted master): retry with backoff;
 * - `connection`: no reply at all (unreachable, dropped, timed out): whether the command ran is unknown;
 * - `other`: anything else (a bug, WRONGTYPE, a refused command).
 */
export type RedisErrorKind =
  'busygroup' | 'nogroup' | 'no-such-key' | 'moved' | 'ask' | 'clusterdown' | 'tryagain' | 'loading' | 'readonly' | 'connection' | 'other';

const PREFIXES: readonly [string, RedisErrorKind][] = [
  ['BUSYGROUP', 'busygroup'],
  ['NOGROUP', 'nogroup'],
  ['MOVED', 'moved'],
  ['ASK', 'ask'],
  ['CLUSTERDOWN', 'clusterdown'],
  ['TRYAGAIN', 'tryagain'],
  ['LOADING', 'loading'],
  ['READONLY', 'readonly'],
  ['MASTERDOWN', 'clusterdown'],
];

/** Node.js socket error codes that mean the connection failed. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

/** ioredis's and the writer's own errors for "no reply": by name, code or message. */
const CONNECTION_NAMES = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError', 'AbortError']);
const CONNECTION_CODES = new Set(['REDIS_CONNECTION_LOST', 'NR_CLOSED']);
const CONNECTION_MESSAGES = [
  /^Connection is closed/i,
  /enableOfflineQueue options is false/i,
  /^Command timed out/i,
  /^Failed to refresh slots cache/i,
  /^None of startup nodes is available/i,
  /^Cluster isn't ready/i,
  /connect ETIMEDOUT/i,
];

function stringProperty(value: unknown, name: string): string | undefined {
  if (typeof value !== 'object' || value === null || !(name in value)) return undefined;
  const property: unknown = (value as Record<string, unknown>)[name];
  return typeof property === 'string' ? property : undefined;
}

/** Classifies a failed Redis command (see RedisErrorKind). */
export function redisErrorKind(err: unknown): RedisErrorKind {
  if (!(err instanceof Error)) return 'other';
  const message = err.message;
  // The reply's error code is its first word (ioredis's ReplyError and the writer's own both keep it).
  const word = message.split(' ', 1)[0] ?? '';
  for (const [prefix, kind] of PREFIXES) if (word === prefix) return kind;
  if (/no such key/i.test(message)) return 'no-such-key';
  const code = stringProperty(err, 'code');
  if (code !== undefined && (SOCKET_CODES.has(code) || CONNECTION_CODES.has(code))) return 'connection';
  if (CONNECTION_NAMES.has(err.name)) return 'connection';
  if (CONNECTION_MESSAGES.some((pattern) => pattern.test(message))) return 'connection';
  return 'other';
}

/** Kinds that heal by themselves: retrying the same command later (with backoff) is the remedy. */
export function isTransientRedisError(kind: RedisErrorKind): boolean {
  return (
    kind === 'moved' ||
    kind === 'ask' ||
    kind === 'clusterdown' ||
    kind === 'tryagain' ||
    kind === 'loading' ||
    kind === 'readonly' ||
    kind === 'connection'
  );
}

/** Where a MOVED or ASK reply points: `MOVED <slot> <host>:<port>`. */
export function redirectTarget(err: unknown): { slot: number; host: string; port: number } | undefined {
  if (!(err instanceof Error)) return undefined;
  const match = /^(?:MOVED|ASK) (\d+) (.+):(\d+)$/.exec(err.message.trim());
  if (match === null) return undefined;
  return { slot: Number(match[1]), host: match[2] as string, port: Number(match[3]) };
}
