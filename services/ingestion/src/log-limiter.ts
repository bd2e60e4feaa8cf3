import type { Logger } from '@pitwall/platform';

/**
 * At most `limit` warnings per window; the rest are counted and summarised once the window ends, so
 * a flood of bad datagrams cannot flood the logs (every one is still counted in the metrics).
 */
export class LogLimiter {
  private windowStart = 0;
  private emitted = 0;
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  warn(fields: object, message: string): void {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) {
      if (this.suppressed > 0) this.logger.warn({ suppressed: this.suppressed }, 'similar warnings suppressed in the last window');
      this.windowStart = now;
      this.emitted = 0;
      this.suppressed = 0;
    }
    if (this.emitted < this.limit) {
      this.emitted++;
      this.logger.warn(fields, message);
    } else {
      this.suppressed++;
    }
  }
}
