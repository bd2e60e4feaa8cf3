/** Capped exponential backoff: the delay before retry `attempt` (0 = the first retry). */
export interface BackoffPolicy {
  /** Ceiling of the first retry's delay. */
  initialMs: number;
  /** The ceiling never grows beyond this. */
  maxMs: number;
}

/** The policy of Redis reconnections and stream-read retries in every service (50 ms doubling to 2 s). */
export const REDIS_BACKOFF: BackoffPolicy = { initialMs: 50, maxMs: 2_000 };

/**
 * The one backoff of the stream plumbing: the ceiling doubles from `initialMs` per attempt up to
 * `maxMs`, and the delay is drawn from the upper half of it ("equal jitter"), so processes that
 * failed together do not retry in lockstep and a delay never collapses to zero.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy = REDIS_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return ceiling / 2 + random() * (ceiling / 2);
}
