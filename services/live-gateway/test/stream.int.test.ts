import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { liveBroadcastGroup, POSITION_FIELD, shardKeys } from '@pitwall/contract';
import { createLogger, createMetricsRegistry } from '@pitwall/platform';
import { sharedRedisUrl, sleep, uniqueName, waitFor } from '@pitwall/testkit';
import { createGatewayMetrics } from '../src/metrics.js';
import type { LivePosition } from '../src/protocol/position-json.js';
import { BroadcastConsumer } from '../src/stream/broadcast-consumer.js';
import { GroupCollector } from '../src/stream/group-collector.js';
import { addPositions } from './support/stream.js';

const logger = createLogger('live-gateway-test', 'silent');

async function groupsOf(redis: Redis, key: string): Promise<string[]> {
  const reply = (await redis.call('XINFO', 'GROUPS', key)) as unknown[][];
  return reply.map((g) => String(g[g.indexOf('name') + 1]));
}

function startConsumer(streamKey: string, shards: number, instanceId: string) {
  const commands = new Redis(sharedRedisUrl());
  const reader = new Redis(sharedRedisUrl(), { maxRetriesPerRequest: null });
  const metrics = createGatewayMetrics(createMetricsRegistry());
  const warmed: LivePosition[] = [];
  const received: LivePosition[] = [];
  const consumer = new BroadcastConsumer(
    { streamKey, shards, instanceId, blockMs: 100, count: 100, warmTailEntries: 50, touchIntervalMs: 100 },
    { commands, reader, metrics, logger, onWarm: (p) => warmed.push(...p), onPositions: (p) => received.push(...p) },
  );
  const close = async () => {
    await consumer.close();
    commands.disconnect();
  };
  return { consumer, metrics, warmed, received, close };
}

describe('per-pod broadcast group on a real Redis', () => {
  const redis = new Redis(sharedRedisUrl());
  afterAll(() => redis.quit());

  it('creates its group at $ on every shard, warms from the tail, reads NOACK, skips bad entries, destroys the group on close', async () => {
    const streamKey = uniqueName('bc');
    const keys = shardKeys(streamKey, 3);
    const devices = ['356307040000000', '356307040000001', '356307040000002', '356307040000003'];
    await addPositions(
      redis,
      streamKey,
      3,
      devices.map((deviceId) => ({ deviceId, ts: 1_000 })),
    );

    const pod = startConsumer(streamKey, 3, uniqueName('pod'));
    await pod.consumer.start();
    const group = liveBroadcastGroup(pod.consumer['options'].instanceId);
    for (const key of keys) expect(await groupsOf(redis, key)).toContain(group);
    // What was there before start is not fanned out, only used for the snapshot cache.
    expect(pod.warmed.map((p) => p.deviceId).sort()).toEqual(devices);

    await redis.xadd(keys[0]!, '*', POSITION_FIELD, Buffer.from('not a position'));
    await addPositions(
      redis,
      streamKey,
      3,
      devices.map((deviceId) => ({ deviceId, ts: 2_000 })),
    );
    await waitFor('new positions', () => pod.received.length === devices.length);
    expect(pod.received.every((p) => p.ts === 2_000)).toBe(true);
    expect((await pod.metrics.invalidEntries.get()).values[0]?.value).toBe(1);
    // NOACK: nothing waits in a pending list.
    for (const key of keys) expect(((await redis.call('XPENDING', key, group)) as unknown[])[0]).toBe(0);

    await pod.close();
    for (const key of keys) expect(await groupsOf(redis, key)).not.toContain(group);
  });

  it('moves a group left by a previous run of the same pod to $ instead of replaying it', async () => {
    const streamKey = uniqueName('bc');
    const instanceId = uniqueName('pod');
    const [key] = shardKeys(streamKey, 1);
    await redis.xgroup('CREATE', key!, liveBroadcastGroup(instanceId), '0', 'MKSTREAM');
    await addPositions(redis, streamKey, 1, [{ deviceId: '356307040000009', ts: 1 }]);
    const pod = startConsumer(streamKey, 1, instanceId);
    await pod.consumer.start();
    await addPositions(redis, streamKey, 1, [{ deviceId: '356307040000009', ts: 2 }]);
    await waitFor('the new position', () => pod.received.length > 0);
    expect(pod.received.map((p) => p.ts)).toEqual([2]);
    await pod.close();
  });

  it('creates its group again when it disappears under it (Redis restarted empty, or collected by mistake)', async () => {
    const streamKey = uniqueName('bc');
    const pod = startConsumer(streamKey, 2, uniqueName('pod'));
    await pod.consumer.start();
    for (const key of shardKeys(streamKey, 2)) await redis.xgroup('DESTROY', key, pod.consumer.group);
    await waitFor('group re-created', async () => (await groupsOf(redis, shardKeys(streamKey, 2)[1]!)).includes(pod.consumer.group));
    await addPositions(redis, streamKey, 2, [{ deviceId: '356307040000001', ts: 5 }]);
    await waitFor('position after re-creation', () => pod.received.some((p) => p.ts === 5));
    expect((await pod.metrics.streamReadErrors.get()).values[0]?.value).toBeGreaterThanOrEqual(1);
    await pod.close();
  });

  it('collects the groups of dead pods only: idle consumers, or no consumer on two passes; never its own or a live one', async () => {
    const streamKey = uniqueName('gc');
    const keys = shardKeys(streamKey, 2);
    const live = startConsumer(streamKey, 2, uniqueName('live'));
    await live.consumer.start();
    const dead = liveBroadcastGroup(uniqueName('dead'));
    const empty = liveBroadcastGroup(uniqueName('starting'));
    for (const key of keys) {
      await redis.xgroup('CREATE', key, dead, '$');
      // Its consumer as a pod makes it (a read of its own history), then the pod dies.
      await redis.call('XREADGROUP', 'GROUP', dead, 'c', 'COUNT', 1, 'STREAMS', key, '0');
      await redis.xgroup('CREATE', key, empty, '$');
      await redis.xgroup('CREATE', key, 'processor', '$');
    }
    const own = liveBroadcastGroup(uniqueName('own'));
    for (const key of keys) await redis.xgroup('CREATE', key, own, '$');
    const metrics = createGatewayMetrics(createMetricsRegistry());
    const collector = new GroupCollector(redis, { streamKey, shards: 2, ownGroup: own, idleMs: 400, intervalMs: 60_000 }, metrics, logger);

    // The live pod reads a quiet stream: its touch keeps its consumer fresh.
    await sleep(600);
    const first = await collector.collect();
    expect(first.sort()).toEqual(keys.map((k) => `${k}/${dead}`).sort());
    const second = await collector.collect();
    expect(second.sort()).toEqual(keys.map((k) => `${k}/${empty}`).sort());
    for (const key of keys) {
      expect((await groupsOf(redis, key)).sort()).toEqual([live.consumer.group, own, 'processor'].sort());
    }
    expect((await metrics.groupsCollected.get()).values[0]?.value).toBe(4);
    await live.close();
  });
});
