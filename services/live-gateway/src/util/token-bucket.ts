/**
 * A token bucket's policy: `ratePerSecond` tokens a second, at most `burst` saved up; one object per pod
 * and limit. A client's bucket is one number it keeps itself, the time (ms) at which its bucket is full
 * again (at or before now: full, so 0 is a fresh, full bucket). With `msPerToken` = 1000 / rate, a
 * bucket full at `fullAtMs` holds `burst - max(0, fullAtMs - now) / msPerToken` tokens now: the same
 * bucket as counting tokens and a refill time (two numbers), as one.
 */
export class TokenBucket {
  private readonly msPerToken: number;
  /** How far past now `fullAtMs` may be for a token to be left (burst - 1 tokens missing). */
  private readonly slackMs: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
  ) {
    this.msPerToken = 1000 / ratePerSecond;
    this.slackMs = (burst - 1) * this.msPerToken;
  }

  /** Takes one token from the bucket full at `fullAtMs`: its new state, or undefined when it has none (state unchanged). */
  take(fullAtMs: number, nowMs: number): number | undefined {
    const missingMs = Math.max(0, fullAtMs - nowMs);
    if (missingMs > this.slackMs) return undefined;
    return nowMs + missingMs + this.msPerToken;
  }

  /** How long until the bucket full at `fullAtMs` has a token (0: now). */
  waitMs(fullAtMs: number, nowMs: number): number {
    return Math.max(0, Math.ceil(Math.max(0, fullAtMs - nowMs) - this.slackMs));
  }
}
