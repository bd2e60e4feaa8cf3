import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createPosition,
  encodePosition,
  liveBroadcastGroup,
  MAX_STORED_IO_VALUE_BYTES,
  POSITION_FIELD,
  shardKeys,
  TRACE_FIELD,
} from '@pitwall/contract';
import { commonEnv, createLogger, createMetricsRegistry, parseConfig } from '@pitwall/platform';
import { groupsOf as groupsOfStream, ShardConnections } from '@pitwall/streams';
import { sharedRedisUrl, sleep, uniqueName, waitFor } from '@pitwall/testkit';
import { parseEntryId } from '../src/history/entry-id.js';
import { createGatewayMetrics } from '../src/metrics.js';
import type { LivePosition } from '../src/protocol/position-json.js';
import { BroadcastConsumer } from '../src/stream/broadcast-consumer.js';
import { GroupCollector } from '../src/stream/group-collector.js';
import { addPositions } from './support/stream.js';

const logger = createLogger('live-gateway-test', 'silent');

/** A Position of ~4 KiB: 15 variable-length IO values of MAX_STORED_IO_VALUE_BYTES. */
function encodeLargePosition(i: number): Uint8Array {
  return encodePosition(
    createPosition({
      deviceId: String(356_307_040_100_000 + i),
      recordedAtMs: BigInt(1_000_000 + i),
      receivedAtMs: BigInt(1_000_000 + i),
      io: Array.from({ length: 15 }, (_, k) => ({ id: 10_000 + k, width: 0, raw: new Uint8Array(MAX_STORED_IO_VALUE_BYTES) })),
    }),
  );
}

async function groupsOf(redis: Redis, key: string): Promise<string[]> {
  return ((await groupsOfStream(redis, key)) ?? []).map((g) => g.name);
}

function startConsumer(
  streamKey: string,
  shards: number,
  instanceId: string,
  warm: { warmTailEntries?: number; warmMaxBytes?: number; warmTimeoutMs?: number } = {},
) {
  const commands = new Redis(sharedRedisUrl());
  const connections = new ShardConnections({
    target: parseConfig(commonEnv, { REDIS_URL: sharedRedisUrl() }),
    name: `live-gateway:${instanceId}`,
    logger,
    replyTimeoutMs: 5_000,
  });
  const metrics = createGatewayMetrics(createMetricsRegistry());
  const warmed: LivePosition[] = [];
  const received: LivePosition[] = [];
  const consumer = new BroadcastConsumer(
    {
      streamKey,
      shards,
      instanceId,
      blockMs: 100,
      count: 100,
      warmTailEntries: 50,
      warmMaxBytes: 32 * 1024 * 1024,
      warmTimeoutMs: 10_000,
      touchIntervalMs: 100,
      ...warm,
    },
    { commands, connections, metrics, logger, onWarm: (p) => warmed.push(...p), onPositions: (p) => received.push(...p) },
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
    expect(pod.received.every((p) => p.traceparent === undefined)).toBe(true);
    // A sampled position keeps its traceparent; every position its source shard and entry id. An
    // entry without field p is counted.
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const sampled = Buffer.from(encodePosition(createPosition({ deviceId: devices[0]!, recordedAtMs: 3_000n, receivedAtMs: 3_000n })));
    const entryId = await redis.xadd(keys[1]!, '*', POSITION_FIELD, sampled, TRACE_FIELD, traceparent);
    await redis.xadd(keys[1]!, '*', 'x', 'no position');
    await waitFor('the sampled position', () => pod.received.length === devices.length + 1);
    expect(pod.received.at(-1)).toMatchObject({
      deviceId: devices[0],
      ts: 3_000,
      rx: 3_000,
      traceparent,
      source: 1,
      id: parseEntryId(entryId ?? ''),
    });
    await waitFor('the entry without p counted', async () => (await pod.metrics.invalidEntries.get()).values[0]?.value === 2);
    // NOACK: nothing waits in a pending list.
    for (const key of keys) expect(((await redis.call('XPENDING', key, group)) as unknown[])[0]).toBe(0);

    await pod.close();
    for (const key of keys) expect(await groupsOf(redis, key)).not.toContain(group);
  });

  it('reads the live-only streams from their tail at start, beside the durable shards', async () => {
    const streamKey = uniqueName('bc');
    const devices = ['356307040000010', '356307040000011', '356307040000012'];
    // Before start: neither warmed nor fanned out (the live-only stream is read from its tail).
    await addPositions(redis, streamKey, 2, [{ deviceId: devices[0]!, ts: 500 }], { live: true });
    const pod = startConsumer(streamKey, 2, uniqueName('pod'));
    await pod.consumer.start();
    await addPositions(
      redis,
      streamKey,
      2,
      devices.map((deviceId) => ({ deviceId, ts: 1_000 })),
      { live: true },
    );
    await addPositions(redis, streamKey, 2, [{ deviceId: devices[0]!, ts: 2_000 }]);
    await addPositions(redis, streamKey, 2, [{ deviceId: devices[1]!, ts: 3_000 }], { live: true });
    await waitFor('positions of both', () => pod.received.length === 5);
    expect(pod.received.map((p) => `${p.deviceId}@${p.ts}`).sort()).toEqual(
      [...devices.map((d) => `${d}@1000`), `${devices[0]!}@2000`, `${devices[1]!}@3000`].sort(),
    );
    expect(pod.warmed).toEqual([]);
    expect((await pod.metrics.livePositionsReceived.get()).values[0]?.value).toBe(4);
    await pod.close();
  });

  it('bounds its warm-up by bytes (GATEWAY_WARM_MAX_BYTES) and by time (GATEWAY_WARM_TIMEOUT_MS)', async () => {
    const streamKey = uniqueName('bc');
    // 300 entries of ~4 KiB (the largest ingestion stores), 1.2 MB, on one shard; 100 KiB may be read.
    const [key] = shardKeys(streamKey, 1);
    const pipeline = redis.pipeline();
    for (let i = 0; i < 300; i++) pipeline.xadd(key!, '*', POSITION_FIELD, Buffer.from(encodeLargePosition(i)));
    await pipeline.exec();
    const maxBytes = 100 * 1024;
    const bounded = startConsumer(streamKey, 1, uniqueName('pod'), { warmTailEntries: 10_000, warmMaxBytes: maxBytes });
    await bounded.consumer.start();
    const read = (await bounded.metrics.warmBytes.get()).values[0]?.value ?? 0;
    expect(read).toBeGreaterThanOrEqual(maxBytes);
    expect(read).toBeLessThanOrEqual(2 * maxBytes);
    expect(bounded.warmed.length).toBeGreaterThan(0);
    expect(bounded.warmed.length).toBeLessThan(300);
    // Newest first: what it kept is the tail.
    expect(bounded.warmed[0]?.ts).toBe(1_000_000 + 299);
    await bounded.close();

    const timedOut = startConsumer(streamKey, 1, uniqueName('pod'), { warmTailEntries: 10_000, warmTimeoutMs: 0 });
    await timedOut.consumer.start();
    expect(timedOut.warmed).toEqual([]);
    await timedOut.close();
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
