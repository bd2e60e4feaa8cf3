import { DirectusUnavailableError } from './directus-unavailable-error.js';

export interface DirectusResponse {
  status: number;
  /** Parsed JSON body of a 2xx answer; undefined otherwise. */
  body: unknown;
}

/**
 * The few GET requests the gateway makes to Directus, each under a timeout. A timeout, a refused
 * connection or a 5xx throws DirectusUnavailableError; any other status is returned for the caller
 * to interpret (401/403/404 mean something for authorization).
 */
export class DirectusClient {
  private readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async get(path: string, token: string): Promise<DirectusResponse> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const reason = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : describe(err);
      throw new DirectusUnavailableError(`Directus ${path.split('?')[0]}: ${reason}`, { cause: err });
    }
    if (res.status >= 500) {
      await res.body?.cancel().catch(() => undefined);
      throw new DirectusUnavailableError(`Directus ${path.split('?')[0]}: HTTP ${res.status}`);
    }
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => undefined);
      return { status: res.status, body: undefined };
    }
    try {
      return { status: res.status, body: await res.json() };
    } catch (err) {
      throw new DirectusUnavailableError(`Directus ${path.split('?')[0]}: unreadable answer`, { cause: err });
    }
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}
