// Every Redis key and consumer-group name of the telemetry plane is built here, and only here.

/** Default base key of the position stream (docs/interfaces.md: STREAM_KEY). */
export const DEFAULT_STREAM_KEY = 'pitwall:positions';

/** Consumer group of the writer: work-split, every entry is written by exactly one writer. */
export const PROCESSOR_GROUP = 'processor';

const LIVE_BROADCAST_PREFIX = 'live-broadcast-';

/** Per-pod fan-out group of a live-gateway instance: every pod reads every entry. */
export function liveBroadcastGroup(instanceId: string): string {
  if (instanceId.length === 0) throw new RangeError('instanceId must not be empty');
  return LIVE_BROADCAST_PREFIX + instanceId;
}

/** True for the fan-out group of any live-gateway pod (used to garbage-collect dead pods' groups). */
export function isLiveBroadcastGroup(group: string): boolean {
  return group.startsWith(LIVE_BROADCAST_PREFIX) && group.length > LIVE_BROADCAST_PREFIX.length;
}

/**
 * Key of one shard: `<streamKey>:{<n>}`. The braces make `n` the Redis Cluster hash tag, so each
 * shard can live on its own cluster node.
 */
export function shardKey(streamKey: string, shard: number): string {
  return `${streamKey}:{${shard}}`;
}

/** Keys of every shard, in shard order. */
export function shardKeys(streamKey: string, shards: number): string[] {
  assertShardCount(shards);
  return Array.from({ length: shards }, (_, n) => shardKey(streamKey, n));
}

/**
 * Live-only stream of one shard: `<streamKey>:live:{<n>}`, same entry format as the shard. Ingestion
 * appends here the records the durable shard could not admit (its `processor` backlog at the cap),
 * trimmed freely and never acknowledged to the device; gateways read it so viewers stay live through
 * a long PostgreSQL outage. Same hash tag as the shard: one cluster slot, one script can touch both.
 */
export function liveShardKey(streamKey: string, shard: number): string {
  return `${streamKey}:live:{${shard}}`;
}

/** Keys of every live-only shard stream, in shard order. */
export function liveShardKeys(streamKey: string, shards: number): string[] {
  assertShardCount(shards);
  return Array.from({ length: shards }, (_, n) => liveShardKey(streamKey, n));
}

/** Dead-letter stream of the writer: entries it could not decode or store, with the reason. */
export function deadLetterKey(streamKey: string): string {
  return `${streamKey}:dead-letter`;
}

/**
 * Shard of a device: FNV-1a (32 bit) of its id modulo the shard count. Stable across processes,
 * restarts and languages, so a device always lands on the same shard and its positions stay ordered.
 */
export function shardOf(deviceId: string, shards: number): number {
  if (shards === 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < deviceId.length; i++) {
    hash ^= deviceId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/** Key of the shard that holds a device's positions. */
export function deviceShardKey(streamKey: string, shards: number, deviceId: string): string {
  return shardKey(streamKey, shardOf(deviceId, shards));
}

function assertShardCount(shards: number): void {
  if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`shard count must be a positive integer, got ${shards}`);
}
