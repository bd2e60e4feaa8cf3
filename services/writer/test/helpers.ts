import { createPosition, encodePosition, PROCESSOR_GROUP, POSITION_FIELD, shardKeys, shardOf, type Position } from '@pitwall/contract';
import { groupsOf, shardGroupState } from '@pitwall/streams';
import { waitFor } from '@pitwall/testkit';
import type { Redis } from 'ioredis';
import pg from 'pg';

/** The n-th test device: a 15-digit IMEI. */
export function imei(n: number): string {
  return String(352_093_080_000_000 + n);
}

/** `count` positions of `devices` devices, one per device per `stepMs`, ending around now. */
export function makePositions(count: number, { devices = 50, startMs = Date.now() - 3_600_000, stepMs = 1_000 } = {}): Position[] {
  return Array.from({ length: count }, (_, i) => {
    const device = i % devices;
    const t = startMs + Math.floor(i / devices) * stepMs;
    return createPosition({
      deviceId: imei(device),
      recordedAtMs: BigInt(t),
      receivedAtMs: BigInt(t + 500),
      latE7: 500_000_000 + i,
      lonE7: 100_000_000 - i,
      altitudeM: 100,
      speedKmh: 80,
      headingDeg: i % 360,
      satellites: 9,
      io: [{ id: 66, width: 2, value: BigInt(i % 65_536) }],
    });
  });
}

/** XADDs positions to their device's shard (pipelined); returns the entry ids in order. */
export async function produce(redis: Redis, streamKey: string, shards: number, positions: readonly Position[]): Promise<string[]> {
  const keys = shardKeys(streamKey, shards);
  const ids: string[] = [];
  for (let i = 0; i < positions.length; i += 1_000) {
    const pipeline = redis.pipeline();
    for (const position of positions.slice(i, i + 1_000)) {
      pipeline.xadd(keys[shardOf(position.deviceId, shards)]!, '*', POSITION_FIELD, Buffer.from(encodePosition(position)));
    }
    for (const [err, id] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      ids.push(String(id));
    }
  }
  return ids;
}

/** Pending and undelivered entries of group processor over every shard. */
export async function groupBacklog(redis: Redis, streamKey: string, shards: number): Promise<{ pending: number; lag: number }> {
  let pending = 0;
  let lag = 0;
  for (const key of shardKeys(streamKey, shards)) {
    const state = await shardGroupState(redis, key, PROCESSOR_GROUP);
    if (state.group === undefined) continue;
    pending += state.group.pending;
    lag += state.backlog.backlog - state.group.pending;
  }
  return { pending, lag };
}

/** Waits until group processor exists on every shard and has delivered and acknowledged everything. */
export async function waitAllAcked(redis: Redis, streamKey: string, shards: number, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    'every entry acknowledged',
    async () => {
      const keys = shardKeys(streamKey, shards);
      for (const key of keys) {
        if (!((await groupsOf(redis, key)) ?? []).some((g) => g.name === PROCESSOR_GROUP)) return false;
      }
      const backlog = await groupBacklog(redis, streamKey, shards);
      return backlog.pending === 0 && backlog.lag === 0;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

export async function query<R extends pg.QueryResultRow>(databaseUrl: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

export async function rowCount(databaseUrl: string, table = 'positions'): Promise<number> {
  const [row] = await query<{ n: string }>(databaseUrl, `SELECT count(*) AS n FROM ${table}`);
  return Number(row?.n);
}

/** Every stored (device, recorded_at ms) key, for exactly-once checks against what was produced. */
export async function storedKeys(databaseUrl: string): Promise<string[]> {
  const rows = await query<{ k: string }>(
    databaseUrl,
    `SELECT device_id || '/' || (extract(epoch FROM recorded_at) * 1000)::bigint AS k FROM positions ORDER BY 1`,
  );
  return rows.map((r) => r.k);
}

export function keysOf(positions: readonly Position[]): string[] {
  return positions.map((p) => `${p.deviceId}/${p.recordedAtMs}`).sort();
}
