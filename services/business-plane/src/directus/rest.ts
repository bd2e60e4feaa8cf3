import { DirectusRequestError } from '../errors/directus-request-error.js';

/** A small Directus REST client: JSON in, `data` out, errors as DirectusRequestError. */
export class DirectusRest {
  constructor(
    readonly url: string,
    private readonly token?: string,
  ) {}

  withToken(token: string): DirectusRest {
    return new DirectusRest(this.url, token);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.url), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new DirectusRequestError(method, path, 0, err instanceof Error ? err.message : String(err));
    }
    const text = await res.text();
    if (!res.ok) throw new DirectusRequestError(method, path, res.status, text);
    if (!text) return undefined as T;
    const parsed = JSON.parse(text) as { data?: T };
    return parsed.data as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }

  delete(path: string): Promise<void> {
    return this.request<void>('DELETE', path);
  }
}

/** A query string for Directus' `filter`, `fields` and `limit` parameters. */
export function query(params: { filter?: unknown; fields?: string[]; limit?: number; sort?: string[] }): string {
  const search = new URLSearchParams();
  if (params.filter !== undefined) search.set('filter', JSON.stringify(params.filter));
  if (params.fields) search.set('fields', params.fields.join(','));
  if (params.limit !== undefined) search.set('limit', String(params.limit));
  if (params.sort) search.set('sort', params.sort.join(','));
  const text = search.toString();
  return text ? `?${text}` : '';
}
