import { describe, expect, it } from 'vitest';
import {
  deadLetterKey,
  deviceShardKey,
  isLiveBroadcastGroup,
  liveBroadcastGroup,
  liveShardKey,
  liveShardKeys,
  PROCESSOR_GROUP,
  shardKey,
  shardKeys,
  shardOf,
} from '@pitwall/contract';

describe('stream keys', () => {
  it('names a shard with a Redis Cluster hash tag', () => {
    expect(shardKey('pitwall:positions', 3)).toBe('pitwall:positions:{3}');
    expect(shardKeys('s', 3)).toEqual(['s:{0}', 's:{1}', 's:{2}']);
    expect(deadLetterKey('pitwall:positions')).toBe('pitwall:positions:dead-letter');
  });

  it("names a shard's live-only stream with the shard's own hash tag (same cluster slot)", () => {
    expect(liveShardKey('pitwall:positions', 3)).toBe('pitwall:positions:live:{3}');
    expect(liveShardKeys('s', 2)).toEqual(['s:live:{0}', 's:live:{1}']);
    expect(() => liveShardKeys('s', 0)).toThrow(RangeError);
  });

  it('rejects a shard count that is not a positive integer', () => {
    expect(() => shardKeys('s', 0)).toThrow(RangeError);
    expect(() => shardKeys('s', 1.5)).toThrow(RangeError);
  });

  it('names the consumer groups of the contract', () => {
    expect(PROCESSOR_GROUP).toBe('processor');
    expect(liveBroadcastGroup('gateway-7d9f')).toBe('live-broadcast-gateway-7d9f');
    expect(isLiveBroadcastGroup('live-broadcast-gateway-7d9f')).toBe(true);
    expect(isLiveBroadcastGroup('processor')).toBe(false);
    expect(() => liveBroadcastGroup('')).toThrow(RangeError);
  });
});

describe('device to shard mapping', () => {
  const imeis = Array.from({ length: 4000 }, (_, i) => String(356307042441013 + i * 7919));

  it('is stable: FNV-1a 32 of the IMEI modulo the shard count', () => {
    // Fixed expectations: changing the hash would move devices between shards and break ordering.
    expect(shardOf('356307042441013', 4)).toBe(shardOf('356307042441013', 4));
    // Reference values computed independently (FNV-1a 32 in Python).
    expect(shardOf('356307042441013', 4)).toBe(2);
    expect(shardOf('352093086403655', 4)).toBe(0);
    expect(shardOf('123456789012345', 16)).toBe(7);
    expect(deviceShardKey('k', 4, '356307042441013')).toBe('k:{2}');
  });

  it('maps everything to shard 0 with one shard', () => {
    expect(imeis.every((imei) => shardOf(imei, 1) === 0)).toBe(true);
  });

  it('spreads devices over the shards', () => {
    const counts = new Array<number>(8).fill(0);
    for (const imei of imeis) counts[shardOf(imei, 8)]! += 1;
    for (const count of counts) expect(count).toBeGreaterThan(imeis.length / 8 / 2);
  });
});
