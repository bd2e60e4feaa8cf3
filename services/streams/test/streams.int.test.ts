import { PROCESSOR_GROUP, shardKeys } from '@pitwall/contract';
import { commonEnv, createLogger, parseConfig } from '@pitwall/platform';
import {
  closeStreamClient,
  consumersOf,
  createGroup,
  createStreamClient,
  groupStates,
  groupsOf,
  redisErrorKind,
  shardGroupState,
  type StreamClient,
} from '@pitwall/streams';
import { RedisCluster, sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const logger = createLogger('streams-test', 'silent');

/** The same behaviour, standalone and on a real cluster. */
function groupSuite(mode: string, connect: () => Promise<StreamClient>) {
  describe(`consumer groups (${mode})`, () => {
    let client: StreamClient;
    beforeAll(async () => {
      client = await connect();
    });
    afterAll(async () => {
      await closeStreamClient(client);
    });

    it('creates a group once (BUSYGROUP tolerated) and measures its backlog per shard', async () => {
      const keys = shardKeys(uniqueName('streams'), 4);
      for (const key of keys) expect(await createGroup(client, key, PROCESSOR_GROUP, { start: '0' })).toBe('created');
      for (const key of keys) expect(await createGroup(client, key, PROCESSOR_GROUP, { start: '0' })).toBe('exists');
      // Shard i gets 3 * (i + 1) entries; the consumer reads 2 of them (pending) on every shard.
      for (const [i, key] of keys.entries()) {
        for (let n = 0; n < 3 * (i + 1); n++) await client.call('XADD', key, '*', 'p', String(n));
        await client.call('XREADGROUP', 'GROUP', PROCESSOR_GROUP, 'c1', 'COUNT', 2, 'STREAMS', key, '>');
      }
      const states = await groupStates(client, keys, PROCESSOR_GROUP);
      expect(states.map((s) => (s instanceof Error ? s.message : s.backlog))).toEqual([
        { backlog: 3, source: 'lag' },
        { backlog: 6, source: 'lag' },
        { backlog: 9, source: 'lag' },
        { backlog: 12, source: 'lag' },
      ]);
      const first = await shardGroupState(client, keys[0] as string, PROCESSOR_GROUP);
      expect(first.group).toMatchObject({ name: PROCESSOR_GROUP, pending: 2, lag: 1, consumers: 1 });
      expect(await consumersOf(client, keys[0] as string, PROCESSOR_GROUP)).toEqual([
        { name: 'c1', pending: 2, idleMs: expect.any(Number) as number },
      ]);
    });

    it('reports a missing stream as empty and a missing group as the whole stream', async () => {
      const key = shardKeys(uniqueName('streams'), 1)[0] as string;
      expect(await groupsOf(client, key)).toBeUndefined();
      expect((await shardGroupState(client, key, PROCESSOR_GROUP)).backlog).toEqual({ backlog: 0, source: 'empty' });
      expect(await consumersOf(client, key, PROCESSOR_GROUP)).toEqual([]);
      await client.call('XADD', key, '*', 'p', 'x');
      expect((await shardGroupState(client, key, PROCESSOR_GROUP)).backlog).toEqual({ backlog: 1, source: 'length' });
      const err = await client.call('XREADGROUP', 'GROUP', PROCESSOR_GROUP, 'c1', 'STREAMS', key, '>').catch((e: unknown) => e);
      expect(redisErrorKind(err)).toBe('nogroup');
    });
  });
}

groupSuite('standalone', () => {
  const config = parseConfig(commonEnv, { REDIS_URL: sharedRedisUrl() });
  return Promise.resolve(createStreamClient(config, { name: 'streams-test', logger }));
});

describe('on a real Redis Cluster (3 masters, 3 replicas)', () => {
  let cluster: RedisCluster;
  let client: StreamClient;
  beforeAll(async () => {
    cluster = await RedisCluster.start();
    client = createStreamClient(parseConfig(commonEnv, { REDIS_CLUSTER_NODES: cluster.seeds }), { name: 'streams-test', logger });
  });
  afterAll(async () => {
    await closeStreamClient(client);
    await cluster.destroy();
  });

  groupSuite('cluster', () =>
    Promise.resolve(createStreamClient(parseConfig(commonEnv, { REDIS_CLUSTER_NODES: cluster.seeds }), { name: 'streams-test', logger })),
  );

  it('is a cluster client, and the shards spread over the masters', async () => {
    expect(client).toBeInstanceOf(Cluster);
    const keys = shardKeys(uniqueName('spread'), 4);
    const masters = new Set<number>();
    for (const key of keys) masters.add((await cluster.masterOf(key)).port);
    expect(masters.size).toBeGreaterThan(1);
  });

  it('refuses one command over several shards (CROSSSLOT): reads must go per shard', async () => {
    const keys = shardKeys(uniqueName('crossslot'), 4);
    const err = await client.call('XREAD', 'COUNT', 1, 'STREAMS', ...keys, ...keys.map(() => '0')).catch((e: unknown) => e);
    expect(String(err)).toMatch(/CROSSSLOT/);
  });

  it('carries on through a manual failover and a killed master, without a new client', async () => {
    const key = shardKeys(uniqueName('failover'), 1)[0] as string;
    await createGroup(client, key, PROCESSOR_GROUP, { start: '0' });
    await client.call('XADD', key, '*', 'p', 'before');
    await client.call('WAIT', 1, 5_000);
    const promoted = await cluster.failover(key);
    await client.call('XADD', key, '*', 'p', 'after-failover');
    expect((await shardGroupState(client, key, PROCESSOR_GROUP)).backlog.backlog).toBe(2);
    expect((await cluster.masterOf(key)).port).toBe(promoted.port);

    await client.call('WAIT', 1, 5_000);
    const killed = await cluster.killMasterOf(key);
    expect(killed.port).toBe(promoted.port);
    await client.call('XADD', key, '*', 'p', 'after-kill');
    expect((await shardGroupState(client, key, PROCESSOR_GROUP)).backlog.backlog).toBe(3);
    await killed.server.restart();
    await cluster.waitHealthy();
  });
});
