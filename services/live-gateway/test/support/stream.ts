import { createPosition, deviceShardKey, encodePosition, POSITION_FIELD } from '@pitwall/contract';
import type { Redis } from 'ioredis';

export interface TestPosition {
  deviceId: string;
  ts: number;
  rx?: number;
  lat?: number;
  lon?: number;
}

/** Appends positions to their shards as ingestion does (one pipeline). */
export async function addPositions(redis: Redis, streamKey: string, shards: number, positions: readonly TestPosition[]): Promise<void> {
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
    pipeline.xadd(deviceShardKey(streamKey, shards, p.deviceId), '*', POSITION_FIELD, Buffer.from(encoded));
  }
  const results = await pipeline.exec();
  for (const [err] of results ?? []) if (err) throw err;
}
