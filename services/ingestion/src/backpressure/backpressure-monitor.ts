import { PROCESSOR_GROUP, shardKeys } from '@pitwall/contract';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import { groupStates, type ShardBacklog, type StreamClient } from '@pitwall/streams';
import type { IngestionMetrics } from '../metrics.js';

export interface BackpressureOptions {
  streamKey: string;
  shards: number;
  streamMaxLen: number;
  /** Engage at backlog >= high * maxLen ... */
  highFraction: number;
  /** ... release at backlog <= low * maxLen. */
  lowFraction: number;
  pollMs: number;
}

/**
 * Keeps MAXLEN trimming from deleting entries the writer has not stored. Polls each shard's
 * `processor` group (XINFO GROUPS `lag` and `pending`, Redis 7) and engages backpressure on a shard
 * whose backlog reaches the high mark: its devices are then neither read nor acknowledged, so records
 * wait on the devices. Released at the low mark (hysteresis). Pending entries count too: MAXLEN trims
 * delivered-but-unacknowledged entries just as well, and a crashed writer must find them again.
 */
export class BackpressureMonitor implements Service {
  readonly name = 'backpressure-monitor';
  private readonly keys: string[];
  private readonly engagedShards: boolean[];
  private readonly waiters: (() => void)[][];
  private readonly listeners: ((shard: number, engaged: boolean) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private warnedSources = new Set<string>();

  constructor(
    private readonly redis: StreamClient,
    private readonly options: BackpressureOptions,
    private readonly metrics: IngestionMetrics,
    private readonly logger: Logger,
  ) {
    this.keys = shardKeys(options.streamKey, options.shards);
    this.engagedShards = this.keys.map(() => false);
    this.waiters = this.keys.map(() => []);
    for (let shard = 0; shard < options.shards; shard++) {
      metrics.backpressure.labels(String(shard)).set(0);
      metrics.backlog.labels(String(shard)).set(0);
    }
  }

  isEngaged(shard: number): boolean {
    return this.engagedShards[shard] === true;
  }

  /** Resolves when the shard is (or becomes) released. */
  released(shard: number): Promise<void> {
    if (!this.isEngaged(shard)) return Promise.resolve();
    return new Promise((resolve) => this.waiters[shard]?.push(resolve));
  }

  /** Called on every state change of a shard. */
  onChange(listener: (shard: number, engaged: boolean) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.options.pollMs);
    this.timer.unref();
  }

  close = idempotent(async () => {
    clearInterval(this.timer);
    // Whoever waits for a release is shutting down with us: let them go (they check for shutdown).
    for (let shard = 0; shard < this.keys.length; shard++) this.release(shard);
    await Promise.resolve();
  });

  /** One poll of every shard; a failed poll keeps the last state (Redis down means nothing is acknowledged anyway). */
  async poll(): Promise<void> {
    if (this.polling || this.redis.status !== 'ready') return;
    this.polling = true;
    try {
      // One round trip per shard (in a cluster, to the node that owns it); a shard that failed keeps its state.
      const states = await groupStates(this.redis, this.keys, PROCESSOR_GROUP);
      for (const [shard, state] of states.entries()) {
        if (state instanceof Error) this.logger.debug({ err: state, shard }, 'backpressure poll of a shard failed');
        else this.apply(shard, state.backlog);
      }
    } catch (err) {
      this.logger.debug({ err }, 'backpressure poll failed');
    } finally {
      this.polling = false;
    }
  }

  private apply(shard: number, { backlog, source }: ShardBacklog): void {
    const label = String(shard);
    this.metrics.backlog.labels(label).set(backlog);
    if ((source === 'length' || source === 'entries-read') && !this.warnedSources.has(`${shard}:${source}`)) {
      this.warnedSources.add(`${shard}:${source}`);
      this.logger.warn(
        { shard, source },
        source === 'length'
          ? 'no usable processor-group lag on this shard (group missing or lag unknown): counting the whole stream as backlog'
          : 'processor-group lag is nil on this shard: computing it from entries-added - entries-read',
      );
    }
    const { streamMaxLen, highFraction, lowFraction } = this.options;
    if (!this.isEngaged(shard) && backlog >= highFraction * streamMaxLen) {
      this.engagedShards[shard] = true;
      this.metrics.backpressure.labels(label).set(1);
      this.logger.warn(
        { shard, backlog, limit: Math.floor(highFraction * streamMaxLen) },
        'backpressure engaged: devices on this shard are paused and not acknowledged',
      );
      for (const listener of this.listeners) listener(shard, true);
    } else if (this.isEngaged(shard) && backlog <= lowFraction * streamMaxLen) {
      this.logger.info({ shard, backlog }, 'backpressure released');
      this.release(shard);
    }
  }

  private release(shard: number): void {
    if (!this.isEngaged(shard)) return;
    this.engagedShards[shard] = false;
    this.metrics.backpressure.labels(String(shard)).set(0);
    const waiting = this.waiters[shard]?.splice(0) ?? [];
    for (const resolve of waiting) resolve();
    for (const listener of this.listeners) listener(shard, false);
  }
}
