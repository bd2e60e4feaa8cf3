import { createPosition, deviceShardKey, encodePosition, liveShardKey, POSITION_FIELD, shardOf } from '@pitwall/contract';
import type { Redis } from 'ioredis';

export interface TestPosition {
  deviceId: string;
  ts: number;
  rx?: number;
  lat?: number;
  lon?: number;
}

/**
 * Appends positions to their shards as ingestion does (one pipeline); with `live`, to the shards'
 * live-only streams, as ingestion does with records it cannot admit.
 */
export async function addPositions(
  redis: Redis,
  streamKey: string,
  shards: number,
  positions: readonly TestPosition[],
  { live = false }: { live?: boolean } = {},
): Promise<void> {
  const pipeline = redis.pipeline();
  for (const p of positions) {
    const encoded = encodePosition(
      createPosition({
        deviceId: p.deviceId,
        recordedAtMs: BigInt(p.ts),
        receivedAtMs: BigInt(p.rx ?? Date.now()),
        latE7: Math.round((p.lat ?? 54.6872) * 1e7),
        lonE7: Math.round((p.lon ?? 25.2797) * 1e7),
        altitudeM: 100,
        speedKmh: 50,
        headingDeg: 90,
        satellites: 9,
      }),
    );
    const key = live ? liveShardKey(streamKey, shardOf(p.deviceId, shards)) : deviceShardKey(streamKey, shards, p.deviceId);
    pipeline.xadd(key, '*', POSITION_FIELD, Buffer.from(encoded));
  }
  const results = await pipeline.exec();
  for (const [err] of results ?? []) if (err) throw err;
}
