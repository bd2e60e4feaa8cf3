import { parseConfig, commonEnv, ConfigError } from '@pitwall/platform';
import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  isTransientRedisError,
  parseConsumers,
  parseGroups,
  parseStreamInfo,
  redirectTarget,
  redisErrorKind,
  shardBacklog,
  type GroupInfo,
} from '@pitwall/streams';

const group = (fields: Record<string, string | number | null>): unknown[] => Object.entries(fields).flat();

describe('XINFO parsing', () => {
  it('reads every group of XINFO GROUPS, with nil lag as unknown', () => {
    const reply = [
      group({ name: 'live-broadcast-a', consumers: 1, pending: 0, 'last-delivered-id': '5-0', 'entries-read': 100, lag: 0 }),
      group({ name: 'processor', consumers: 2, pending: 7, 'last-delivered-id': '4-1', 'entries-read': null, lag: null }),
    ];
    expect(parseGroups(reply)).toEqual([
      { name: 'live-broadcast-a', consumers: 1, pending: 0, lastDeliveredId: '5-0', entriesRead: 100, lag: 0 },
      { name: 'processor', consumers: 2, pending: 7, lastDeliveredId: '4-1', entriesRead: undefined, lag: undefined },
    ]);
  });

  it('reads buffer replies (callBuffer) and string numbers alike', () => {
    const reply = [[Buffer.from('name'), Buffer.from('processor'), Buffer.from('pending'), 3, Buffer.from('lag'), Buffer.from('12')]];
    expect(parseGroups(reply)[0]).toMatchObject({ name: 'processor', pending: 3, lag: 12 });
    expect(parseGroups('not a list')).toEqual([]);
  });

  it('reads XINFO CONSUMERS and XINFO STREAM', () => {
    expect(parseConsumers([group({ name: 'w-1', pending: 4, idle: 1500, inactive: 1400 })])).toEqual([
      { name: 'w-1', pending: 4, idleMs: 1500 },
    ]);
    expect(parseStreamInfo(group({ length: 90, 'radix-tree-keys': 1, 'last-generated-id': '7-1', 'entries-added': 100 }))).toEqual({
      length: 90,
      entriesAdded: 100,
      lastGeneratedId: '7-1',
    });
    expect(parseStreamInfo(new Map<string, unknown>([['length', 3]]))).toEqual({
      length: 3,
      entriesAdded: undefined,
      lastGeneratedId: '0-0',
    });
  });
});

describe('shardBacklog', () => {
  const processor = (lag: number | undefined, pending: number, entriesRead: number | undefined): GroupInfo => ({
    name: 'processor',
    consumers: 1,
    pending,
    lastDeliveredId: '0-0',
    entriesRead,
    lag,
  });

  it('is lag plus pending of the group', () => {
    expect(shardBacklog([processor(20, 7, 80)], { length: 100, entriesAdded: 100, lastGeneratedId: '1-0' }, 'processor')).toEqual({
      backlog: 27,
      source: 'lag',
    });
  });

  it('falls back to entries-added - entries-read when lag is nil, then to the length', () => {
    expect(shardBacklog([processor(undefined, 1, 40)], { length: 90, entriesAdded: 100, lastGeneratedId: '1-0' }, 'processor')).toEqual({
      backlog: 61,
      source: 'entries-read',
    });
    expect(shardBacklog([processor(undefined, 0, undefined)], { length: 9, entriesAdded: 9, lastGeneratedId: '1-0' }, 'processor')).toEqual(
      {
        backlog: 9,
        source: 'length',
      },
    );
  });

  it('counts the whole stream when the group is missing, nothing when the stream is', () => {
    expect(shardBacklog([], { length: 42, entriesAdded: 50, lastGeneratedId: '1-0' }, 'processor')).toEqual({
      backlog: 42,
      source: 'length',
    });
    expect(shardBacklog(undefined, undefined, 'processor')).toEqual({ backlog: 0, source: 'empty' });
  });
});

describe('redisErrorKind', () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });
  const named = (message: string, name: string) => Object.assign(new Error(message), { name });

  it.each([
    ['BUSYGROUP Consumer Group name already exists', 'busygroup'],
    ['NOGROUP No such key or consumer group', 'nogroup'],
    ['ERR no such key', 'no-such-key'],
    ['MOVED 3999 127.0.0.1:7002', 'moved'],
    ['ASK 3999 127.0.0.1:7002', 'ask'],
    ['CLUSTERDOWN The cluster is down', 'clusterdown'],
    ['TRYAGAIN Multiple keys request during rehashing of slot', 'tryagain'],
    ['LOADING Redis is loading the dataset in memory', 'loading'],
    ["READONLY You can't write against a read only replica.", 'readonly'],
    ['Connection is closed.', 'connection'],
    ["Stream isn't writeable and enableOfflineQueue options is false", 'connection'],
    ['WRONGTYPE Operation against a key holding the wrong kind of value', 'other'],
    ['ERR unknown command', 'other'],
  ])('%s -> %s', (message, kind) => {
    expect(redisErrorKind(new Error(message))).toBe(kind);
  });

  it('knows connection failures by code and name', () => {
    expect(redisErrorKind(withCode('connect ECONNREFUSED 127.0.0.1:1', 'ECONNREFUSED'))).toBe('connection');
    expect(redisErrorKind(withCode('redis connection lost: x', 'REDIS_CONNECTION_LOST'))).toBe('connection');
    expect(redisErrorKind(named('Reached the max retries per request limit', 'MaxRetriesPerRequestError'))).toBe('connection');
    expect(redisErrorKind('NOGROUP as a string')).toBe('other');
  });

  it('only transitions are transient', () => {
    expect(isTransientRedisError('clusterdown')).toBe(true);
    expect(isTransientRedisError('connection')).toBe(true);
    expect(isTransientRedisError('nogroup')).toBe(false);
    expect(isTransientRedisError('other')).toBe(false);
  });

  it('reads where MOVED and ASK point', () => {
    expect(redirectTarget(new Error('MOVED 3999 127.0.0.1:7002'))).toEqual({ slot: 3999, host: '127.0.0.1', port: 7002 });
    expect(redirectTarget(new Error('ASK 12 ::1:7000'))).toEqual({ slot: 12, host: '::1', port: 7000 });
    expect(redirectTarget(new Error('NOGROUP x'))).toBeUndefined();
  });
});

describe('backoffDelay', () => {
  it('doubles from the initial delay up to the cap, drawn from the upper half', () => {
    const policy = { initialMs: 100, maxMs: 1_000 };
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, policy, () => 0))).toEqual([50, 100, 200, 400, 500, 500]);
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, policy, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffDelay(10_000, policy, () => 0.5)).toBe(750);
  });
});

describe('REDIS_CLUSTER_NODES', () => {
  it('is empty when unset (standalone)', () => {
    expect(parseConfig(commonEnv, {}).REDIS_CLUSTER_NODES).toEqual({ nodes: [], tls: false });
  });

  it('reads host:port seeds, TLS with rediss://', () => {
    expect(parseConfig(commonEnv, { REDIS_CLUSTER_NODES: 'redis-0.redis:6379, 10.0.0.2:7000,[::1]:7001' }).REDIS_CLUSTER_NODES).toEqual({
      nodes: [
        { host: 'redis-0.redis', port: 6379 },
        { host: '10.0.0.2', port: 7000 },
        { host: '::1', port: 7001 },
      ],
      tls: false,
    });
    expect(parseConfig(commonEnv, { REDIS_CLUSTER_NODES: 'rediss://a:1,rediss://b:2' }).REDIS_CLUSTER_NODES.tls).toBe(true);
  });

  it.each(['a', 'a:', 'a:99999', 'http://a:1', 'rediss://a:1,b:2'])('refuses %s, naming the variable', (value) => {
    expect(() => parseConfig(commonEnv, { REDIS_CLUSTER_NODES: value })).toThrow(ConfigError);
    expect(() => parseConfig(commonEnv, { REDIS_CLUSTER_NODES: value })).toThrow(/REDIS_CLUSTER_NODES/);
  });
});
