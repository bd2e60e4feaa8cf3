// The one retry backoff of the protocol's clients (the live map, @pitwall/live-client, the load harness's
// viewers, k6). Self-contained (no imports), so a k6 script can import this file by path.

/** How a client spaces its retries of a retryable error or a reconnect. */
export interface BackoffPolicy {
  /** Delay before the first retry when the server gave no hint, ms. */
  initialMs: number;
  /** Largest delay the doubling reaches, ms (a server's longer `retry_after_ms` is still honoured). */
  maxMs: number;
  /** Jitter: each delay is stretched by a random 0..jitter of itself (0.5: up to half again). */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, jitter: 0.5 };

/**
 * Delay before retry number `attempt` (0 for the first): the doubling delay of the policy, never less
 * than the server's `retry_after_ms` when it sent one, stretched by random jitter. The jitter only ever
 * adds, so no client comes back before the server said, and a crowd told the same hint at the same
 * moment (a race start) comes back spread over the hint's next half instead of all at once.
 */
export function backoffDelayMs(
  attempt: number,
  retryAfterMs?: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const doubling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, Math.min(attempt, 30)));
  const hint = retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : 0;
  const floor = Math.max(doubling, hint);
  return Math.round(floor * (1 + policy.jitter * Math.min(1, Math.max(0, random()))));
}

/** Retries of one request (or connection): counts the attempts and resets on success. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly policy: BackoffPolicy = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** Retries so far since the last success. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next retry, given the server's `retry_after_ms` if any. */
  next(retryAfterMs?: number): number {
    return backoffDelayMs(this.attempt++, retryAfterMs, this.policy, this.random);
  }

  /** It worked: the next failure starts from the first delay again. */
  reset(): void {
    this.attempt = 0;
  }
}
