import type { Redis } from 'ioredis';
import { POSITION_FIELD, TRACE_FIELD } from '@pitwall/contract';
import type { Histogram } from '@pitwall/platform';
import { StoreError } from './store-error.js';

/**
 * Appends encoded Positions to a shard stream: every record of a packet in one pipelined round trip
 * (XADD MAXLEN ~ <STREAM_MAXLEN> * p <Position>). Resolves only when Redis confirmed every entry,
 * which is what makes an acknowledgement to the device safe. The entries of a sampled packet also
 * carry its traceparent (field `tp`).
 */
export class PositionStore {
  private readonly maxLen: string;

  constructor(
    private readonly redis: Redis,
    streamMaxLen: number,
    private readonly xaddSeconds: Histogram,
  ) {
    this.maxLen = String(streamMaxLen);
  }

  async append(shardKey: string, entries: readonly Buffer[], traceparent?: string): Promise<void> {
    if (entries.length === 0) return;
    const started = performance.now();
    const pipeline = this.redis.pipeline();
    if (traceparent === undefined)
      for (const entry of entries) pipeline.xadd(shardKey, 'MAXLEN', '~', this.maxLen, '*', POSITION_FIELD, entry);
    else
      for (const entry of entries)
        pipeline.xadd(shardKey, 'MAXLEN', '~', this.maxLen, '*', POSITION_FIELD, entry, TRACE_FIELD, traceparent);
    let results: [Error | null, unknown][] | null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      throw new StoreError(`XADD to ${shardKey} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (results === null) throw new StoreError(`XADD to ${shardKey} returned no replies`);
    for (const [err] of results) {
      if (err) throw new StoreError(`XADD to ${shardKey} failed: ${err.message}`, { cause: err });
    }
    this.xaddSeconds.observe((performance.now() - started) / 1000);
  }
}
