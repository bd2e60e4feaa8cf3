import { isLiveBroadcastGroup, shardKeys } from '@pitwall/contract';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import { consumersOf, groupsOf, type StreamClient } from '@pitwall/streams';
import type { GatewayMetrics } from '../metrics.js';

export interface GroupCollectorOptions {
  streamKey: string;
  shards: number;
  /** This pod's own group, never collected. */
  ownGroup: string;
  /** A group whose consumers are all idle this long belongs to a dead pod. */
  idleMs: number;
  intervalMs: number;
}

/**
 * Garbage-collects the fan-out groups of dead pods: a pod that crashed (no SIGTERM) leaves its
 * `live-broadcast-*` group behind on every shard. A live pod's consumer touches its group well
 * within the idle threshold (BroadcastConsumer.touch, even on a quiet stream), so a group whose
 * consumers are all idle beyond the threshold is dead. A group with no consumer at all is collected
 * only when it is still without one on the next pass (a starting pod creates it, then touches it).
 */
export class GroupCollector implements Service {
  readonly name = 'group-collector';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private seenEmpty = new Set<string>();

  constructor(
    private readonly redis: StreamClient,
    private readonly options: GroupCollectorOptions,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
  ) {}

  start(): Promise<void> {
    this.timer = setInterval(() => {
      this.running ??= this.collect()
        .then(() => undefined)
        .catch((err: unknown) => this.logger.warn({ err }, 'fan-out group collection failed'))
        .finally(() => (this.running = undefined));
    }, this.options.intervalMs);
    this.timer.unref();
    return Promise.resolve();
  }

  close = idempotent(async () => {
    clearInterval(this.timer);
    await this.running;
  });

  /** One pass over every shard; returns the groups destroyed as `key/group`. */
  async collect(): Promise<string[]> {
    const destroyed: string[] = [];
    const emptyNow = new Set<string>();
    for (const key of shardKeys(this.options.streamKey, this.options.shards)) {
      for (const { name: group } of (await groupsOf(this.redis, key)) ?? []) {
        if (group === this.options.ownGroup || !isLiveBroadcastGroup(group)) continue;
        const consumers = await consumersOf(this.redis, key, group);
        const id = `${key}/${group}`;
        let dead: boolean;
        if (consumers.length === 0) {
          emptyNow.add(id);
          dead = this.seenEmpty.has(id);
        } else {
          dead = consumers.every((consumer) => consumer.idleMs > this.options.idleMs);
        }
        if (!dead) continue;
        await this.redis.call('XGROUP', 'DESTROY', key, group);
        this.metrics.groupsCollected.inc();
        this.logger.info({ key, group }, 'destroyed the fan-out group of a dead pod');
        destroyed.push(id);
        emptyNow.delete(id);
      }
    }
    this.seenEmpty = emptyNow;
    return destroyed;
  }
}
