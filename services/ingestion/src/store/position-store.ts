import type { Writable } from 'node:stream';
import { Cluster } from 'ioredis';
import {
  DEAD_LETTER_ORIGINAL_MAX_BYTES,
  DEAD_LETTER_ORIGINAL_PREFIX,
  DEAD_LETTER_REASON_FIELD,
  POSITION_FIELD,
  PROCESSOR_GROUP,
  TRACE_FIELD,
} from '@pitwall/contract';
import type { Histogram } from '@pitwall/platform';
import { refreshOnTopologyError, type StreamClient } from '@pitwall/streams';
import { ADMISSION_SCRIPT, ADMISSION_SCRIPT_SHA } from './admission-script.js';
import { StoreError } from './store-error.js';

export interface PositionStoreOptions {
  /** Cap of the `processor` group's backlog per shard (STREAM_MAXLEN). */
  streamMaxLen: number;
  /** Approximate MAXLEN of each live-only stream. */
  liveMaxLen: number;
  /** Dead-letter stream key and its approximate MAXLEN. */
  deadLetterKey: string;
  deadLetterMaxLen: number;
  /**
   * Replicas of the shard's master that must confirm admitted records before they count as stored
   * (INGESTION_MIN_REPLICAS, default 0), and how long to wait for them (INGESTION_REPLICA_TIMEOUT_MS).
   */
  minReplicas?: number;
  replicaTimeoutMs?: number;
}

/** What became of a packet's records. */
export interface Admission {
  /** True: every record is in the shard stream (durable, acknowledge). False: live-only (do not acknowledge). */
  admitted: boolean;
  /** The group's backlog on the shard as the script saw it, before this packet. */
  backlog: number;
}

/** A record ingestion acknowledges but parks in the dead-letter stream instead of storing it. */
export interface DeadLetter {
  reason: string;
  error: string;
  deviceId: string;
  /** The encoded Position (cut to DEAD_LETTER_ORIGINAL_MAX_BYTES). */
  position: Buffer;
}

const POSITION_ORIGINAL_FIELD = DEAD_LETTER_ORIGINAL_PREFIX + POSITION_FIELD;

/**
 * Appends encoded Positions to a shard, through the admission script (admission-script.ts): one
 * EVALSHA per packet, every record admitted or none. Resolves with the outcome only when Redis
 * replied, which is what makes an acknowledgement to the device safe; rejects with StoreError when
 * Redis failed. The entries of a sampled packet also carry its traceparent (field `tp`).
 *
 * With `minReplicas` >= 1 a WAIT follows the EVALSHA (see runReplicated): admitted records count as
 * stored only once that many replicas confirmed them, so a failover cannot lose an acknowledged
 * position. Not confirmed in time: StoreError (not acknowledged; the device resends).
 */
export class PositionStore {
  private readonly cap: string;
  private readonly liveMaxLen: string;
  private readonly deadLetterMaxLen: string;
  /** The Redis socket corked for the current event-loop turn (see coalesceWrites). */
  private corked: Writable | undefined;

  constructor(
    private readonly redis: StreamClient,
    private readonly options: PositionStoreOptions,
    private readonly xaddSeconds: Histogram,
  ) {
    this.cap = String(options.streamMaxLen);
    this.liveMaxLen = String(options.liveMaxLen);
    this.deadLetterMaxLen = String(options.deadLetterMaxLen);
  }

  /** Loads the script into the script cache (EVALSHA then finds it; NOSCRIPT reloads it anyway). */
  async loadScript(): Promise<void> {
    await this.redis.call('SCRIPT', 'LOAD', ADMISSION_SCRIPT);
  }

  /** Admits every record into `shardKey`, or appends them all to `liveKey` when the shard is at its cap. */
  async append(shardKey: string, liveKey: string, entries: readonly Buffer[], traceparent?: string): Promise<Admission> {
    return this.run(shardKey, liveKey, this.cap, entries, traceparent);
  }

  /** Appends the records to `liveKey` only (backpressure engaged: viewers see them, the device is not acknowledged). */
  async appendLive(shardKey: string, liveKey: string, entries: readonly Buffer[], traceparent?: string): Promise<Admission> {
    return this.run(shardKey, liveKey, '-1', entries, traceparent);
  }

  private async run(shardKey: string, liveKey: string, cap: string, entries: readonly Buffer[], traceparent?: string): Promise<Admission> {
    if (entries.length === 0) return { admitted: true, backlog: 0 };
    const started = performance.now();
    const args: (string | Buffer)[] = [
      shardKey,
      liveKey,
      cap,
      this.liveMaxLen,
      PROCESSOR_GROUP,
      POSITION_FIELD,
      TRACE_FIELD,
      traceparent ?? '',
      ...entries,
    ];
    this.coalesceWrites();
    const minReplicas = this.options.minReplicas ?? 0;
    let reply: unknown;
    let confirmed = Number.POSITIVE_INFINITY;
    try {
      if (minReplicas > 0) {
        ({ reply, confirmed } = await this.runReplicated(args, minReplicas));
      } else {
        try {
          reply = await this.redis.evalsha(ADMISSION_SCRIPT_SHA, 2, ...args);
        } catch (err) {
          // Redis restarted or flushed its script cache: EVAL sends the script (and caches it again).
          if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
          reply = await this.redis.eval(ADMISSION_SCRIPT, 2, ...args);
        }
      }
    } catch (err) {
      // In a cluster, the slot may have moved (failover): the next append goes to its new master.
      refreshOnTopologyError(this.redis, err);
      throw new StoreError(`admission to ${shardKey} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.xaddSeconds.observe((performance.now() - started) / 1000);
    if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'number')
      throw new StoreError(`admission to ${shardKey} returned an unexpected reply`);
    if (reply[0] === 1 && reply.length !== 2 + entries.length)
      throw new StoreError(`admission to ${shardKey} returned ${reply.length - 2} ids for ${entries.length} records`);
    if (reply[0] === 1 && !(confirmed >= minReplicas)) {
      throw new StoreError(`records on ${shardKey} confirmed by ${confirmed} of ${minReplicas} replicas in time`);
    }
    return { admitted: reply[0] === 1, backlog: reply[1] };
  }

  /**
   * The admission call followed by WAIT in the same pipeline (INGESTION_MIN_REPLICAS >= 1): both go
   * over the connection that writes the records (in a cluster, the one to the shard's master, which
   * the script's keys route to), so WAIT counts the replicas that have them. EVAL after NOSCRIPT.
   */
  private async runReplicated(args: (string | Buffer)[], minReplicas: number): Promise<{ reply: unknown; confirmed: number }> {
    const attempt = async (command: 'evalsha' | 'eval'): Promise<[Error | null, unknown][]> => {
      const pipeline = this.redis.pipeline();
      if (command === 'evalsha') pipeline.evalsha(ADMISSION_SCRIPT_SHA, 2, ...args);
      else pipeline.eval(ADMISSION_SCRIPT, 2, ...args);
      pipeline.call('WAIT', minReplicas, this.options.replicaTimeoutMs ?? 1_000);
      const results = await pipeline.exec();
      if (results === null) throw new Error('no replies');
      return results;
    };
    let results = await attempt('evalsha');
    if (results[0]?.[0]?.message.startsWith('NOSCRIPT') === true) results = await attempt('eval');
    const [scriptResult, waitResult] = results;
    if (scriptResult === undefined || waitResult === undefined) throw new Error('no reply');
    if (scriptResult[0]) throw scriptResult[0];
    if (waitResult[0]) throw waitResult[0];
    return { reply: scriptResult[1], confirmed: Number(waitResult[1]) };
  }

  /**
   * Packets of many devices are read in the same poll phase: their admission calls go out in one
   * socket write (writev) at the end of the turn instead of one write per packet, and their replies
   * come back in one read. The Redis socket is corked at the turn's first call and uncorked in
   * setImmediate (the same turn's check phase), so nothing waits longer than the turn itself. On
   * loopback the write syscall cost ~16 us of CPU per packet at 2,000 devices x 1 Hz.
   */
  private coalesceWrites(): void {
    // A cluster client writes to one socket per node: nothing to cork here.
    const stream: Writable | undefined = this.redis instanceof Cluster ? undefined : this.redis.stream;
    if (stream === undefined || stream === this.corked) return;
    stream.cork();
    this.corked = stream;
    setImmediate(() => {
      this.corked = undefined;
      stream.uncork();
    });
  }

  /**
   * Appends records to the dead-letter stream (approximate MAXLEN, originals cut to
   * DEAD_LETTER_ORIGINAL_MAX_BYTES, error text to 200 characters): bounded in bytes.
   */
  async deadLetter(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const key = this.options.deadLetterKey;
    const pipeline = this.redis.pipeline();
    for (const letter of letters) {
      const original =
        letter.position.length > DEAD_LETTER_ORIGINAL_MAX_BYTES
          ? letter.position.subarray(0, DEAD_LETTER_ORIGINAL_MAX_BYTES)
          : letter.position;
      pipeline.xadd(
        key,
        'MAXLEN',
        '~',
        this.deadLetterMaxLen,
        '*',
        DEAD_LETTER_REASON_FIELD,
        letter.reason,
        'error',
        letter.error.slice(0, 200),
        'source',
        'ingestion',
        'device_id',
        letter.deviceId.slice(0, 64),
        POSITION_ORIGINAL_FIELD,
        original,
      );
    }
    let results: [Error | null, unknown][] | null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      throw new StoreError(`XADD to ${key} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (results === null) throw new StoreError(`XADD to ${key} returned no replies`);
    for (const [err] of results) if (err) throw new StoreError(`XADD to ${key} failed: ${err.message}`, { cause: err });
  }
}
