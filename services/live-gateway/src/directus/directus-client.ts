import type { Logger } from '@pitwall/platform';
import type { GatewayMetrics } from '../metrics.js';
import type { ConcurrencyLimiter } from '../util/limiter.js';
import { DirectusUnavailableError } from './directus-unavailable-error.js';

/** Directus's answers the gateway acts on. */
export type DirectusAnswerStatus = 200 | 401 | 403 | 404;

export interface DirectusResponse {
  status: DirectusAnswerStatus;
  /** Parsed JSON body of a 200; undefined otherwise. */
  body: unknown;
}

/** What a call is for (metric label). */
export type DirectusCall = 'verify' | 'authorize' | 'entries';

/**
 * The few GET requests the gateway makes to Directus, every one of them through the one concurrency
 * limiter and under a timeout. Only 200 and Directus's refusals (401, 403) and 404 come back as answers;
 * everything else (429, 5xx, other statuses, timeouts, network errors, an unreadable body, too many calls
 * waiting) throws DirectusUnavailableError: "cannot tell now", never "no".
 */
export class DirectusClient {
  private readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
    private readonly limiter: ConcurrencyLimiter,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  get(call: DirectusCall, path: string, token: string): Promise<DirectusResponse> {
    return this.limiter.run(
      () => this.request(call, path, token),
      (reason) => {
        this.metrics.directusCalls.inc({ call, result: 'limited' });
        return new DirectusUnavailableError(
          reason === 'full' ? 'too many Directus calls waiting' : 'waited too long for a free Directus call slot',
          this.timeoutMs,
        );
      },
    );
  }

  private async request(call: DirectusCall, path: string, token: string): Promise<DirectusResponse> {
    const what = `Directus ${path.split('?')[0] ?? path}`;
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      this.metrics.directusCalls.inc({ call, result: 'unreachable' });
      const reason = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : describe(err);
      throw new DirectusUnavailableError(`${what}: ${reason}`, undefined, { cause: err });
    }
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
      throw new DirectusUnavailableError(`${what}: HTTP ${status}`, retryAfterMs(res.headers.get('retry-after')));
    }
    try {
      const body: unknown = await res.json();
      this.metrics.directusCalls.inc({ call, result: '200' });
      return { status, body };
    } catch (err) {
      this.metrics.directusCalls.inc({ call, result: 'other' });
      throw new DirectusUnavailableError(`${what}: unreadable answer`, undefined, { cause: err });
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
