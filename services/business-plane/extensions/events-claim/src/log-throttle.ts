/**
 * At most one log line per interval for a failure that may repeat on every login (a broken database
 * during a race start would otherwise write thousands of lines a second); the next line that is
 * allowed says how many were left out.
 */
export class LogThrottle {
  private lastMs = Number.NEGATIVE_INFINITY;
  private suppressed = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** undefined: stay quiet; a number: log now, mentioning that many suppressed since the last line. */
  take(): number | undefined {
    const nowMs = this.now();
    if (nowMs - this.lastMs < this.intervalMs) {
      this.suppressed++;
      return undefined;
    }
    this.lastMs = nowMs;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return suppressed;
  }
}
