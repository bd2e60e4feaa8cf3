import { readFileSync } from 'node:fs';
import { decodeEntryFields, parseReadReply, shardKeys, type Position } from '@pitwall/contract';
import { Redis } from 'ioredis';

// The positions feed of the two baselines: what the gateway does between Redis and the socket,
// minus authentication, authorization, conflation and metrics. XREAD (no group) on every shard,
// decode, route device -> event, batch per event within the window, hand the batch to `flush`.

export interface BenchDevice {
  imei: string;
  event: number;
  label: string;
}

export interface FeedConfig {
  redisUrl: string;
  streamKey: string;
  shards: number;
  windowMs: number;
  port: number;
  devices: BenchDevice[];
}

export function feedConfigFromEnv(): FeedConfig {
  const need = (name: string) => {
    const value = process.env[name];
    if (value === undefined || value === '') throw new Error(`${name} is required`);
    return value;
  };
  return {
    redisUrl: need('BENCH_REDIS_URL'),
    streamKey: need('BENCH_STREAM_KEY'),
    shards: Number(need('BENCH_SHARDS')),
    windowMs: Number(need('BENCH_WINDOW_MS')),
    port: Number(need('BENCH_PORT')),
    devices: JSON.parse(readFileSync(need('BENCH_DEVICES_FILE'), 'utf8')) as BenchDevice[],
  };
}

export interface Feed {
  /** Batches handed to `flush` so far (one per event per window): the frames a server published. */
  readonly flushes: number;
  stop(): void;
}

export function startFeed<T>(
  config: FeedConfig,
  render: (position: Position, device: BenchDevice) => T,
  flush: (eventId: number, batch: T[]) => void,
): Feed {
  const routes = new Map(config.devices.map((d) => [d.imei, d]));
  const pending = new Map<number, T[]>();
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const keys = shardKeys(config.streamKey, config.shards);
  // Each shard from its last entry now, not `$`: `$` again on the next read would skip what was
  // appended to a still-empty shard while the previous reply was being handled.
  const ids = keys.map(() => '0-0');
  let stopped = false;
  let flushes = 0;

  const flushEvent = (eventId: number) => {
    const batch = pending.get(eventId);
    pending.delete(eventId);
    if (batch === undefined || batch.length === 0) return;
    flushes++;
    flush(eventId, batch);
  };

  void (async () => {
    for (const [shard, key] of keys.entries()) {
      const [last] = await redis.xrevrange(key, '+', '-', 'COUNT', 1);
      if (last !== undefined) ids[shard] = last[0];
    }
    while (!stopped) {
      const reply = await redis.callBuffer('XREAD', 'COUNT', 1000, 'BLOCK', 1000, 'STREAMS', ...keys, ...ids).catch(() => null);
      for (const batch of parseReadReply(reply)) {
        const shard = keys.indexOf(batch.key);
        for (const entry of batch.entries) {
          ids[shard] = entry.id;
          const position = decodeEntryFields(entry.fields);
          const device = routes.get(position.deviceId);
          if (device === undefined) continue;
          let list = pending.get(device.event);
          if (list === undefined) {
            pending.set(device.event, (list = []));
            if (config.windowMs > 0) setTimeout(() => flushEvent(device.event), config.windowMs);
          }
          list.push(render(position, device));
        }
      }
      if (config.windowMs === 0) for (const eventId of [...pending.keys()]) flushEvent(eventId);
    }
  })();

  return {
    get flushes() {
      return flushes;
    },
    stop: () => {
      stopped = true;
      redis.disconnect();
    },
  };
}

/** What a baseline server answers on GET /stats: the suites compare it with what the viewers counted. */
export interface FeedStats {
  framesPublished: number;
}

export function feedStats(feed: Feed): string {
  const stats: FeedStats = { framesPublished: feed.flushes };
  return JSON.stringify(stats);
}
