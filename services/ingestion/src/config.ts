import { commonEnv, intVar, listVar, numberVar, portVar, z } from '@pitwall/platform';

/**
 * Environment of the ingestion service (CONTRACT.md plus the INGESTION_* extras below; each has a
 * default). Keys are the variable names.
 */
export const ingestionEnv = {
  ...commonEnv,
  /** Approximate MAXLEN of each shard stream (XADD MAXLEN ~). */
  STREAM_MAXLEN: intVar(1_000_000, 100, 1_000_000_000),
  INGESTION_TCP_PORT: portVar(5027),
  INGESTION_UDP_PORT: portVar(5027),
  /** Address the TCP and UDP listeners bind. */
  INGESTION_HOST: z.string().trim().min(1).default('0.0.0.0'),
  /** IMEIs allowed to connect (comma-separated); empty accepts every device. */
  INGESTION_IMEI_ALLOWLIST: listVar(),
  /** Concurrent TCP connections; more are closed at once. */
  INGESTION_MAX_CONNECTIONS: intVar(20_000, 1, 1_000_000),
  /** A TCP connection silent this long is closed. */
  INGESTION_IDLE_TIMEOUT_MS: intVar(300_000, 1_000, 86_400_000),
  /** Largest AVL data length accepted per frame; a frame declaring more is skipped and counted. */
  INGESTION_MAX_FRAME_BYTES: intVar(65_536, 512, 16_777_216),
  /** Rejected frames a connection may send before it is closed. */
  INGESTION_MAX_BAD_FRAMES: intVar(10, 0, 1_000_000),
  /** A packet whose Redis appends have not all been confirmed after this long is not acknowledged and its connection closes. */
  INGESTION_REDIS_TIMEOUT_MS: intVar(5_000, 100, 600_000),
  /** Processor backlog (lag + pending) per shard, as a fraction of STREAM_MAXLEN, above which acknowledging and reading stop... */
  INGESTION_BACKPRESSURE_HIGH: numberVar(0.8, 0.01, 1),
  /** ...and below which they resume. */
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
  return problems;
}
