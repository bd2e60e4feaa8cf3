import type { Logger } from '@pitwall/platform';

type Level = 'debug' | 'info' | 'warn';

interface Window {
  start: number;
  emitted: number;
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * At most `limit` lines per message per window; the rest are counted and summarised in one warning
 * per message when the window ends (on a timer, so a flood that stops is still reported). A flood of
 * bad devices cannot flood the logs, and one kind of flood does not hide other lines (every event is
 * still counted in the metrics). Messages must be constant strings (details go in the fields): they
 * key the windows. Lines of a level the logger does not emit cost nothing and do not count. One
 * limiter per service: every per-device and per-packet line goes through it.
 */
export class LogLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly logger: Logger,
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly onSuppressed?: (lines: number) => void,
  ) {}

  warn(fields: object, message: string): void {
    this.log('warn', fields, message);
  }

  info(fields: object, message: string): void {
    this.log('info', fields, message);
  }

  debug(fields: object, message: string): void {
    this.log('debug', fields, message);
  }

  private log(level: Level, fields: object, message: string): void {
    if (!this.logger.isLevelEnabled(level)) return;
    const now = Date.now();
    let window = this.windows.get(message);
    if (window === undefined) {
      window = { start: now, emitted: 0, suppressed: 0, timer: undefined };
      this.windows.set(message, window);
    } else if (now - window.start >= this.windowMs) {
      this.flush(message, window);
      window.start = now;
    }
    if (window.emitted < this.limit) {
      window.emitted++;
      this.logger[level](fields, message);
      return;
    }
    window.suppressed++;
    this.onSuppressed?.(1);
    if (window.timer === undefined) {
      const w = window;
      w.timer = setTimeout(() => this.flush(message, w), Math.max(0, w.start + this.windowMs - now));
      w.timer.unref();
    }
  }

  private flush(message: string, window: Window): void {
    clearTimeout(window.timer);
    window.timer = undefined;
    if (window.suppressed > 0) {
      this.logger.warn(
        { suppressed: window.suppressed, windowMs: this.windowMs, like: message },
        'similar per-device log lines suppressed in the last window',
      );
    }
    window.emitted = 0;
    window.suppressed = 0;
    window.start = Date.now();
  }
}
