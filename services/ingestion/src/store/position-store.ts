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

/** A packet waiting for its shard's admission call. */
interface QueuedPacket {
  entries: readonly Buffer[];
  /** Backpressure engaged: live-only whatever the backlog. */
  liveOnly: boolean;
  traceparent: string;
  resolve(admission: Admission): void;
  reject(err: StoreError): void;
}

/** The packets of one shard gathered in the current event-loop turn. */
interface ShardBatch {
  shardKey: string;
  liveKey: string;
  packets: QueuedPacket[];
  records: number;
}

/**
 * One admission call carries at most this many records (or MAX_BATCH_PACKETS packets): Redis runs a
 * script alone, so a bounded call keeps every other client's wait short (a 50-record packet of a
 * flood is one call of its own, 1 Hz packets of many devices share one).
 */
const MAX_BATCH_RECORDS = 512;
const MAX_BATCH_PACKETS = 128;

/**
 * Appends encoded Positions to a shard, through the admission script (admission-script.ts). Packets
 * of many devices are read in the same poll phase: the packets a turn offers to one shard wait for
 * the turn's check phase (setImmediate, no timer) and go in one EVALSHA, which admits each packet
 * whole or not at all; the calls of every shard leave in one socket write. At 2,000 devices x 1 Hz
 * a turn holds several packets: one command, one script run and one XINFO per turn and shard
 * instead of per packet. Each packet's promise resolves with its own outcome only when Redis
 * replied, which is what makes an acknowledgement to the device safe; it rejects with StoreError
 * when Redis failed (every packet of that call). The entries of a sampled packet also carry its
 * traceparent (field `tp`).
 *
 * With `minReplicas` >= 1 a WAIT follows each EVALSHA (see runReplicated): admitted records count as
 * stored only once that many replicas confirmed them, so a failover cannot lose an acknowledged
 * position. Not confirmed in time: StoreError (not acknowledged; the device resends).
 */
export class PositionStore {
  private readonly cap: string;
  private readonly liveMaxLen: string;
  private readonly deadLetterMaxLen: string;
  /** This turn's packets by shard key, sent in the check phase (flushScheduled). */
  private readonly batches = new Map<string, ShardBatch>();
  private flushScheduled = false;

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
  append(shardKey: string, liveKey: string, entries: readonly Buffer[], traceparent?: string): Promise<Admission> {
    return this.enqueue(shardKey, liveKey, entries, false, traceparent);
  }

  /** Appends the records to `liveKey` only (backpressure engaged: viewers see them, the device is not acknowledged). */
  appendLive(shardKey: string, liveKey: string, entries: readonly Buffer[], traceparent?: string): Promise<Admission> {
    return this.enqueue(shardKey, liveKey, entries, true, traceparent);
  }

  private enqueue(
    shardKey: string,
    liveKey: string,
    entries: readonly Buffer[],
    liveOnly: boolean,
    traceparent?: string,
  ): Promise<Admission> {
    if (entries.length === 0) return Promise.resolve({ admitted: true, backlog: 0 });
    return new Promise<Admission>((resolve, reject) => {
      let batch = this.batches.get(shardKey);
      if (batch !== undefined && (batch.records + entries.length > MAX_BATCH_RECORDS || batch.packets.length >= MAX_BATCH_PACKETS)) {
        // Full: it leaves now (in order, before this packet's), this packet starts the next one.
        this.batches.delete(shardKey);
        void this.send(batch);
        batch = undefined;
      }
      if (batch === undefined) {
        batch = { shardKey, liveKey, packets: [], records: 0 };
        this.batches.set(shardKey, batch);
      }
      batch.packets.push({ entries, liveOnly, traceparent: traceparent ?? '', resolve, reject });
      batch.records += entries.length;
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** The turn's check phase: every shard's call, in one socket write where one socket carries them all. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.batches.size === 0) return;
    const batches = [...this.batches.values()];
    this.batches.clear();
    // A cluster client writes to one socket per node: nothing to cork there.
    const stream: Writable | undefined = this.redis instanceof Cluster ? undefined : this.redis.stream;
    const cork = batches.length > 1 && stream !== undefined && stream.writable;
    if (cork) stream.cork();
    try {
      for (const batch of batches) void this.send(batch);
    } finally {
      if (cork) stream.uncork();
    }
  }

  /** One admission call for a batch; settles every packet's promise. */
  private async send(batch: ShardBatch): Promise<void> {
    const { shardKey, packets } = batch;
    const started = performance.now();
    const args: (string | Buffer)[] = [shardKey, batch.liveKey, this.cap, this.liveMaxLen, PROCESSOR_GROUP, POSITION_FIELD, TRACE_FIELD];
    for (const packet of packets) {
      args.push(String(packet.entries.length), packet.liveOnly ? '1' : '0', packet.traceparent);
      for (const entry of packet.entries) args.push(entry);
    }
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
      const failed = new StoreError(`admission to ${shardKey} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      for (const packet of packets) packet.reject(failed);
      return;
    }
    this.xaddSeconds.observe((performance.now() - started) / 1000);
    const outcomes = admissionsOf(reply, packets);
    if (outcomes instanceof Error) {
      const failed = new StoreError(`admission to ${shardKey} ${outcomes.message}`);
      for (const packet of packets) packet.reject(failed);
      return;
    }
    packets.forEach((packet, i) => {
      const outcome = outcomes[i] as Admission;
      if (outcome.admitted && !(confirmed >= minReplicas)) {
        packet.reject(new StoreError(`records on ${shardKey} confirmed by ${confirmed} of ${minReplicas} replicas in time`));
      } else {
        packet.resolve(outcome);
      }
    });
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

/**
 * Each packet's outcome from the script's reply ({admitted, backlog} per packet, then the ids of the
 * admitted records), or what is wrong with the reply: an admitted packet counts only when Redis
 * returned an id for every record the call admitted.
 */
export function admissionsOf(reply: unknown, packets: readonly { entries: readonly unknown[] }[]): Admission[] | Error {
  if (!Array.isArray(reply) || reply.length < 2 * packets.length) return new Error('returned an unexpected reply');
  const outcomes: Admission[] = [];
  let admittedRecords = 0;
  for (let i = 0; i < packets.length; i++) {
    const admitted: unknown = reply[2 * i];
    const backlog: unknown = reply[2 * i + 1];
    if ((admitted !== 0 && admitted !== 1) || typeof backlog !== 'number') return new Error('returned an unexpected reply');
    if (admitted === 1) admittedRecords += packets[i]?.entries.length ?? 0;
    outcomes.push({ admitted: admitted === 1, backlog });
  }
  const ids = reply.length - 2 * packets.length;
  if (ids !== admittedRecords) return new Error(`returned ${ids} ids for ${admittedRecords} admitted records`);
  return outcomes;
}
