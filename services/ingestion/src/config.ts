import { commonEnv, intVar, listVar, numberVar, portVar, z } from '@pitwall/platform';

/**
 * Environment of the ingestion service (docs/interfaces.md plus the INGESTION_* extras below; each has a
 * default). Keys are the variable names.
 */
export const ingestionEnv = {
  ...commonEnv,
  /**
   * Cap of the `processor` group's backlog (lag + pending) per shard. The admission script appends a
   * packet's records to the shard only while backlog + records <= this; otherwise they go live-only
   * and the device is not acknowledged. Nothing is trimmed at append (the writer trims what it has stored).
   */
  STREAM_MAXLEN: intVar(1_000_000, 100, 1_000_000_000),
  /** Approximate MAXLEN of each shard's live-only stream (records not admitted, for viewers only). */
  INGESTION_LIVE_STREAM_MAXLEN: intVar(10_000, 100, 10_000_000),
  /** Approximate MAXLEN of the dead-letter stream entries ingestion adds (future timestamps); each entry is at most ~4.5 KB. */
  INGESTION_DEAD_LETTER_MAXLEN: intVar(10_000, 100, 10_000_000),
  /** A record dated further ahead of the server clock than this is acknowledged but dead-lettered (future_timestamp), not stored. */
  INGESTION_MAX_FUTURE_MS: intVar(300_000, 0, 31_622_400_000),
  INGESTION_TCP_PORT: portVar(5027),
  INGESTION_UDP_PORT: portVar(5027),
  /** Address the TCP and UDP listeners bind. */
  INGESTION_HOST: z.string().trim().min(1).default('0.0.0.0'),
  /** IMEIs allowed to connect (comma-separated); empty accepts every device. */
  INGESTION_IMEI_ALLOWLIST: listVar(),
  /** Concurrent TCP connections; more are closed at once. */
  INGESTION_MAX_CONNECTIONS: intVar(20_000, 1, 1_000_000),
  /** Concurrent TCP connections from one source address (generous: fleets sit behind carrier NAT); more are closed at once. */
  INGESTION_MAX_CONNECTIONS_PER_ADDRESS: intVar(1_000, 1, 1_000_000),
  /** A TCP connection that has not completed its IMEI handshake this long after connecting is closed. */
  INGESTION_HANDSHAKE_TIMEOUT_MS: intVar(15_000, 100, 600_000),
  /** A frame started (first bytes received) but not complete after this long closes its connection. */
  INGESTION_FRAME_TIMEOUT_MS: intVar(30_000, 100, 600_000),
  /** A TCP connection silent this long is closed. */
  INGESTION_IDLE_TIMEOUT_MS: intVar(300_000, 1_000, 86_400_000),
  /**
   * Largest AVL data length accepted per frame; a frame declaring more is skipped unbuffered and
   * counted. Devices send a few hundred bytes to a few KiB; also the most a half-sent frame holds.
   */
  INGESTION_MAX_FRAME_BYTES: intVar(16_384, 512, 1_048_576),
  /** Rejected frames a connection may send before it is closed. */
  INGESTION_MAX_BAD_FRAMES: intVar(10, 0, 1_000_000),
  /** A packet whose Redis appends have not all been confirmed after this long is not acknowledged and its connection closes. */
  INGESTION_REDIS_TIMEOUT_MS: intVar(5_000, 100, 600_000),
  /**
   * Replicas of the shard's master that must confirm a packet's records (WAIT on the connection that
   * wrote them) before the device is acknowledged; 0 acknowledges once the master has them.
   */
  INGESTION_MIN_REPLICAS: intVar(0, 0, 16),
  /** How long WAIT waits for INGESTION_MIN_REPLICAS; not confirmed in time, the packet is not acknowledged (the device resends). */
  INGESTION_REPLICA_TIMEOUT_MS: intVar(1_000, 1, 600_000),
  /** Processor backlog (lag + pending) per shard, as a fraction of STREAM_MAXLEN, above which records go live-only, unacknowledged... */
  INGESTION_BACKPRESSURE_HIGH: numberVar(0.8, 0.01, 1),
  /** ...and below which admission resumes. */
  INGESTION_BACKPRESSURE_LOW: numberVar(0.6, 0, 1),
  /** How often the processor group's backlog is read. */
  INGESTION_BACKPRESSURE_POLL_MS: intVar(500, 10, 60_000),
  /** UDP datagrams being stored at once; more are dropped unacknowledged (the device resends). */
  INGESTION_UDP_MAX_INFLIGHT: intVar(4_096, 1, 1_000_000),
  /** Time shutdown waits for in-flight packets before closing sockets. */
  INGESTION_DRAIN_TIMEOUT_MS: intVar(10_000, 0, 120_000),
};

export type IngestionConfig = z.infer<z.ZodObject<typeof ingestionEnv>>;

/** Cross-field checks the per-variable schema cannot express; returns problems as [variable, message]. */
export function ingestionConfigProblems(config: IngestionConfig): [string, string][] {
  const problems: [string, string][] = [];
  if (config.INGESTION_BACKPRESSURE_LOW >= config.INGESTION_BACKPRESSURE_HIGH) {
    problems.push(['INGESTION_BACKPRESSURE_LOW', 'must be below INGESTION_BACKPRESSURE_HIGH']);
  }
  if (config.INGESTION_MIN_REPLICAS > 0 && config.INGESTION_REPLICA_TIMEOUT_MS >= config.INGESTION_REDIS_TIMEOUT_MS) {
    problems.push(['INGESTION_REPLICA_TIMEOUT_MS', 'must be below INGESTION_REDIS_TIMEOUT_MS']);
  }
  return problems;
}
