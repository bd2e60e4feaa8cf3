import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createPosition,
  decodeEntryFields,
  deviceShardKey,
  encodePosition,
  parseReadReply,
  POSITION_FIELD,
  PROCESSOR_GROUP,
} from '@pitwall/contract';
import { RedisServer, sharedRedisUrl, uniqueName } from '@pitwall/testkit';

describe('stream contract against a real Redis', () => {
  const redis = new Redis(sharedRedisUrl());
  afterAll(() => redis.quit());

  it('round-trips a Position: encode, XADD to its shard, XRANGE, decode', async () => {
    const streamKey = uniqueName('positions');
    const position = createPosition({
      deviceId: '352093086403655',
      recordedAtMs: 1_560_407_006_000n,
      latE7: 1,
      lonE7: -1,
      io: [{ id: 66, width: 2, value: 23996n }],
    });
    const key = deviceShardKey(streamKey, 4, position.deviceId);
    await redis.xadd(key, '*', POSITION_FIELD, Buffer.from(encodePosition(position)));
    const entries = await redis.xrangeBuffer(key, '-', '+');
    expect(entries).toHaveLength(1);
    expect(decodeEntryFields(entries[0]![1])).toEqual(position);
  });

  it('reads an entry in the processor group', async () => {
    const key = uniqueName('positions');
    await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM');
    const position = createPosition({ deviceId: '356307042441013', recordedAtMs: 5n });
    await redis.xadd(key, '*', POSITION_FIELD, Buffer.from(encodePosition(position)));
    const batches = parseReadReply(await redis.callBuffer('XREADGROUP', 'GROUP', PROCESSOR_GROUP, 'c1', 'COUNT', 10, 'STREAMS', key, '>'));
    expect(batches.map((b) => b.key)).toEqual([key]);
    expect(decodeEntryFields(batches[0]!.entries[0]!.fields)).toEqual(position);
    expect(parseReadReply(await redis.callBuffer('XREADGROUP', 'GROUP', PROCESSOR_GROUP, 'c1', 'COUNT', 10, 'STREAMS', key, '>'))).toEqual(
      [],
    );
  });
});

describe('a Redis restarted inside a test', () => {
  it('keeps what a durable Redis acknowledged across a crash, and serves again after restart', async () => {
    const server = await RedisServer.start({ durable: true });
    const client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    client.on('error', () => undefined);
    try {
      const key = uniqueName('positions');
      const position = createPosition({ deviceId: '356307042441013', recordedAtMs: 7n });
      await client.xadd(key, '*', POSITION_FIELD, Buffer.from(encodePosition(position)));
      await server.kill();
      await expect(client.xlen(key)).rejects.toThrow();
      await server.restart();
      const entries = await client.xrangeBuffer(key, '-', '+');
      expect(entries.map(([, fields]) => decodeEntryFields(fields))).toEqual([position]);
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });
});
