import type { Logger } from '@pitwall/platform';
import type { GatewayMetrics } from '../metrics.js';
import type { Interest } from '../util/interest.js';
import type { ConcurrencyLimiter } from '../util/limiter.js';
import { DirectusUnavailableError } from './directus-unavailable-error.js';

/** Directus's answers the gateway acts on. */
export type DirectusAnswerStatus = 200 | 401 | 403 | 404;

export interface DirectusResponse {
  status: DirectusAnswerStatus;
  /** Parsed JSON body of a 200; undefined otherwise. */
  body: unknown;
}

/**
 * What a call is for (metric label): `entries` a subscribe waits for, `entries_refresh` the periodic
 * re-read of watched events.
 */
export type DirectusCall = 'verify' | 'authorize' | 'entries' | 'entries_refresh';

/** Shortest and longest retry hint the gateway gives when Directus itself said nothing (no Retry-After). */
export const RETRY_HINT_MIN_MS = 500;
export const RETRY_HINT_MAX_MS = 30_000;
/** Weight of the latest call in the running mean of call durations (the retry hint's basis). */
const DURATION_EWMA_WEIGHT = 0.1;

/**
 * The few GET requests the gateway makes to Directus, every one of them through the one concurrency
 * limiter and under a timeout. Only 200 and Directus's refusals (401, 403) and 404 come back as answers;
 * everything else (429, 5xx, other statuses, timeouts, network errors, an unreadable body, too many calls
 * waiting) throws DirectusUnavailableError: "cannot tell now", never "no".
 */
export class DirectusClient {
  private readonly baseUrl: string;
  /** Running mean of how long a call takes, ms (starts at a guess; every answered call moves it). */
  private meanCallMs = 100;

  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
    private readonly limiter: ConcurrencyLimiter,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /**
   * `interest`: who wants the answer; when it is no longer active by the time a call slot frees up
   * (every connection that asked has closed), the call is dropped (DirectusUnavailableError) instead of made.
   */
  get(call: DirectusCall, path: string, token: string, interest?: Interest): Promise<DirectusResponse> {
    return this.limiter.run(
      () => this.request(call, path, token),
      (reason) => {
        if (reason === 'abandoned') {
          this.metrics.directusCalls.inc({ call, result: 'abandoned' });
          return new DirectusUnavailableError('nobody waits for this Directus call any more', this.retryHintMs());
        }
        this.metrics.directusCalls.inc({ call, result: 'limited' });
        return new DirectusUnavailableError(
          reason === 'full' ? 'too many Directus calls waiting' : 'waited too long for a free Directus call slot',
          this.retryHintMs(),
        );
      },
      interest,
    );
  }

  /**
   * When asking again may succeed, ms, when Directus did not say: the time the calls queued now take to
   * drain at the recent pace (queue / concurrency x mean call time), between RETRY_HINT_MIN_MS and
   * RETRY_HINT_MAX_MS. Clients add jitter to it (the protocol's backoff), so a herd told the same hint
   * comes back spread out.
   */
  retryHintMs(): number {
    const drainMs = ((this.limiter.queued + this.limiter.active) / this.limiter.concurrency) * this.meanCallMs;
    return Math.round(Math.min(RETRY_HINT_MAX_MS, Math.max(RETRY_HINT_MIN_MS, drainMs)));
  }

  private observe(startedMs: number): void {
    this.meanCallMs += (performance.now() - startedMs - this.meanCallMs) * DURATION_EWMA_WEIGHT;
  }

  private async request(call: DirectusCall, path: string, token: string): Promise<DirectusResponse> {
    const what = `Directus ${path.split('?')[0] ?? path}`;
    const started = performance.now();
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      this.metrics.directusCalls.inc({ call, result: 'unreachable' });
      const timedOut = err instanceof Error && err.name === 'TimeoutError';
      if (timedOut) this.observe(started);
      const reason = timedOut ? `no answer within ${this.timeoutMs} ms` : describe(err);
      throw new DirectusUnavailableError(`${what}: ${reason}`, Math.max(this.retryHintMs(), timedOut ? this.timeoutMs : 0), {
        cause: err,
      });
    }
    this.observe(started);
    const status = res.status;
    if (status === 401 || status === 403 || status === 404) {
      await res.body?.cancel().catch(() => undefined);
      this.metrics.directusCalls.inc({ call, result: String(status) });
      return { status, body: undefined };
    }
    if (status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      this.metrics.directusCalls.inc({ call, result: status === 429 ? '429' : status >= 500 ? '5xx' : 'other' });
      // 429 and 5xx are Directus being busy or down; anything else is not an answer we understand (a
      // changed API, a proxy in between): worth a log line, but still not a refusal.
      if (status !== 429 && status < 500)
        this.logger.warn({ status, path: path.split('?')[0] }, 'unexpected Directus status; treated as unavailable');
      throw new DirectusUnavailableError(`${what}: HTTP ${status}`, retryAfterMs(res.headers.get('retry-after')) ?? this.retryHintMs());
    }
    try {
      const body: unknown = await res.json();
      this.metrics.directusCalls.inc({ call, result: '200' });
      return { status, body };
    } catch (err) {
      this.metrics.directusCalls.inc({ call, result: 'other' });
      throw new DirectusUnavailableError(`${what}: unreadable answer`, this.retryHintMs(), { cause: err });
    }
  }
}

/** Retry-After in seconds or as an HTTP date, as ms from now; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, nowMs = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}
