import { commonEnv, instanceIdEnv, intVar, listVar, portVar, urlVar, z, type Env, parseConfig } from '@pitwall/platform';
import { MIN_SECRET_BYTES } from './auth/token-verifier.js';

/**
 * Environment of the live gateway. The shared variables first (docs/interfaces.md), then this service's
 * own tuning knobs, each with a default that suits a pod serving a few thousand viewers.
 */
export const liveGatewayEnv = {
  ...commonEnv,
  ...instanceIdEnv,
  GATEWAY_PORT: portVar(8080),
  DIRECTUS_URL: urlVar(['http', 'https'], 'http://127.0.0.1:8055'),
  /** Directus's SECRET: when set, access tokens are verified locally (HS256); unset, by /users/me. */
  DIRECTUS_SECRET: z
    .string()
    .refine((value) => new TextEncoder().encode(value).byteLength >= MIN_SECRET_BYTES, {
      message: `must be at least ${MIN_SECRET_BYTES} bytes (an HS256 key shorter than its hash is weak; Directus's own default is 32 random bytes)`,
    })
    .optional(),
  /** Static token that may read every event's entries (device IMEI and label). */
  DIRECTUS_SERVICE_TOKEN: z.string().trim().min(1, 'must not be empty'),

  // Fan-out
  /** Positions of one event within this window go out as one frame; 0 sends each read batch at once. */
  GATEWAY_BATCH_WINDOW_MS: intVar(250, 0, 10_000),
  /** Latest positions kept for snapshots (one per device); the least recently updated go first. */
  GATEWAY_LATEST_CACHE_DEVICES: intVar(200_000, 1, 10_000_000),
  /** Entries read per shard from the stream tail at start to warm the snapshot cache. */
  GATEWAY_WARM_TAIL_ENTRIES: intVar(10_000, 0, 1_000_000),
  /**
   * Seconds of positions kept in memory (every device this pod reads) for resumes (`since`) and trails
   * (`history_seconds`); 0: none (every resume gets `recovered: false` and the snapshot).
   */
  GATEWAY_HISTORY_SECONDS: intVar(120, 0, 3_600),
  /** Bound on the history's estimated heap bytes; beyond it the oldest positions go (the window shrinks). */
  GATEWAY_HISTORY_MAX_BYTES: intVar(128 * 1024 * 1024, 0, 16 * 1024 * 1024 * 1024),
  /**
   * On a drain (SIGTERM: a deploy, a scale-in) the viewers are told (`going_away`, `reconnect_within_ms`)
   * to spread their reconnects so that about this many per second reach the other pods: 5,000 viewers
   * over 5 s at the default (at least 1 s, at most 30 s).
   */
  GATEWAY_DRAIN_RECONNECTS_PER_SECOND: intVar(1_000, 1, 1_000_000),
  /** How long a subscribe whose cursor is ahead of this pod (it came from a pod a little ahead) waits for it. */
  GATEWAY_RESUME_WAIT_MS: intVar(2_000, 0, 60_000),
  /**
   * Bytes of stream entries the warm-up reads at most, over every shard (each its share), in chunks
   * of about 1 MiB: what it costs in memory does not grow with the entries' size.
   */
  GATEWAY_WARM_MAX_BYTES: intVar(32 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024),
  /** The warm-up stops after this long, the cache warmed or not: a slow Redis never holds the pod's start. */
  GATEWAY_WARM_TIMEOUT_MS: intVar(10_000, 100, 600_000),
  /**
   * A position whose device time is more than this ahead of the clock is neither forwarded nor kept
   * for snapshots (counted as dropped, reason future): ingestion dead-letters them too
   * (INGESTION_MAX_FUTURE_MS), this keeps one stored before that, or from a skewed ingestion clock,
   * from pinning its device.
   */
  GATEWAY_MAX_FUTURE_MS: intVar(300_000, 0, 7 * 86_400_000),
  /**
   * An event shows positions whose device time is within starts_at - margin .. ends_at + margin (cars
   * drive to the start before it, and back after the end). Trackers are reused from one event to the next.
   */
  GATEWAY_EVENT_WINDOW_MARGIN_MS: intVar(30 * 60_000, 0, 7 * 86_400_000),

  // Connections and protocol (the largest message is the protocol's own limit, 4096 bytes)
  GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION: intVar(20, 1, 10_000),
  /** Subscribe requests per second per connection (token bucket, burst = 2x). */
  GATEWAY_SUBSCRIBE_RATE_PER_SECOND: intVar(5, 1, 10_000),
  /** `auth` messages (and query tokens) per minute per connection (token bucket, burst 3); beyond: rate_limited. */
  GATEWAY_AUTH_RATE_PER_MINUTE: intVar(6, 1, 6_000),
  GATEWAY_MAX_CONNECTIONS: intVar(20_000, 1, 1_000_000),
  /** Connections not yet authenticated at once; beyond, the oldest of them is closed (4408) to make room. */
  GATEWAY_MAX_UNAUTHENTICATED_CONNECTIONS: intVar(2_000, 1, 1_000_000),
  /** Connections from one client address; beyond: HTTP 429 on upgrade. */
  GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: intVar(1_000, 1, 1_000_000),
  /**
   * Request header holding the client's address when a proxy in front sets it (for example x-real-ip
   * behind ingress-nginx; x-forwarded-for: its last entry). Unset: the TCP peer. Set it only when every
   * connection comes through a proxy that overwrites the header.
   */
  GATEWAY_CLIENT_ADDRESS_HEADER: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^[a-z0-9-]+$/, 'must be a header name')
    .optional(),
  /** Origins (scheme://host[:port]) whose pages may connect; empty: any. Requests without Origin (not browsers) pass. */
  GATEWAY_ALLOWED_ORIGINS: listVar(),
  /**
   * Unread bytes (queued for a client that is not reading) at which a client that sends a request is
   * dropped: replies to a client that does not read would otherwise pile up.
   */
  GATEWAY_MAX_UNREAD_BYTES: intVar(512 * 1024, 4096, 64 * 1024 * 1024),
  /** Protocol errors (bad JSON, unknown type) tolerated on one connection before close 4400. */
  GATEWAY_MAX_PROTOCOL_ERRORS: intVar(10, 1, 10_000),
  /** Seconds without traffic before uWS closes a socket; it sends pings well before that. */
  GATEWAY_IDLE_TIMEOUT_SECONDS: intVar(60, 8, 960),

  // Authentication and authorization
  /** A connection that has not authenticated within this closes with 4408. */
  GATEWAY_AUTH_TIMEOUT_MS: intVar(5_000, 100, 120_000),
  /** Time between `token_expired` and close 4401, for the client to send a fresh token. */
  GATEWAY_TOKEN_EXPIRY_GRACE_MS: intVar(10_000, 0, 600_000),
  /** Timeout of each Directus call (/users/me, /items/events/:id, entries). */
  GATEWAY_DIRECTUS_TIMEOUT_MS: intVar(2_000, 50, 60_000),
  /** How long an authorization result per user and event is reused. */
  GATEWAY_PERMISSION_CACHE_TTL_MS: intVar(15_000, 0, 3_600_000),
  /**
   * Every live subscription Directus authorized is re-authorized this often; a revoked one ends with
   * `forbidden`. One the token's `pitwall_events` claim authorized is not: Directus's ACCESS_TOKEN_TTL
   * bounds it (a revoked event leaves the claim at the next refresh, which re-checks it at Directus).
   */
  GATEWAY_REVALIDATE_INTERVAL_MS: intVar(60_000, 500, 86_400_000),
  /** Concurrent Directus calls at most (token verification, authorization, re-validation, entries together). */
  GATEWAY_DIRECTUS_CONCURRENCY: intVar(32, 1, 1_000),
  /** Longest wait for a free Directus call slot; beyond: authorization_unavailable. */
  GATEWAY_DIRECTUS_MAX_WAIT_MS: intVar(10_000, 100, 600_000),
  /** How long a token Directus refused (/users/me 401/403) is refused again without asking. */
  GATEWAY_REFUSED_TOKEN_CACHE_MS: intVar(30_000, 0, 3_600_000),
  /** Entries of watched events are re-read this often. */
  GATEWAY_ENTRIES_REFRESH_INTERVAL_MS: intVar(30_000, 500, 86_400_000),

  // Slow clients
  /** Buffered bytes beyond which a client stops getting topic frames and is conflated. */
  GATEWAY_CONFLATE_BUFFER_BYTES: intVar(256 * 1024, 1024, 256 * 1024 * 1024),
  /** uWS maxBackpressure: frames beyond this are dropped by uWS (conflation covers them). */
  GATEWAY_MAX_BACKPRESSURE_BYTES: intVar(1024 * 1024, 4096, 1024 * 1024 * 1024),
  /** A conflated client that has not drained within this is closed. */
  GATEWAY_SLOW_CLIENT_TIMEOUT_MS: intVar(30_000, 100, 3_600_000),
  /** How often buffered amounts are checked (one sweep over connections, not per frame). */
  GATEWAY_SLOW_CLIENT_CHECK_MS: intVar(250, 10, 60_000),

  // Stream
  /** BLOCK of each XREADGROUP: bounds how long a read waits and how fast shutdown stops it. */
  GATEWAY_READ_BLOCK_MS: intVar(1_000, 10, 60_000),
  /** COUNT of each XREADGROUP per shard. */
  GATEWAY_READ_COUNT: intVar(1_000, 1, 100_000),
  /** Fan-out groups of other pods whose consumers are all idle this long are destroyed. */
  GATEWAY_GROUP_IDLE_MS: intVar(600_000, 10_000, 86_400_000),
  GATEWAY_GROUP_GC_INTERVAL_MS: intVar(60_000, 1_000, 86_400_000),

  /** Hard limit on the whole shutdown (drain, group destroy, Redis close). */
  GATEWAY_SHUTDOWN_TIMEOUT_MS: intVar(20_000, 1_000, 600_000),
};

export type LiveGatewayConfig = z.infer<z.ZodObject<typeof liveGatewayEnv>>;

/** Parses the environment (throws ConfigError naming each bad variable). */
export function parseLiveGatewayConfig(env: Env = process.env): LiveGatewayConfig {
  return parseConfig(liveGatewayEnv, env);
}
