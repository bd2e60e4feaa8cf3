/** A Directus REST call answered with a non-2xx status (or did not answer). */
export class DirectusRequestError extends Error {
  readonly code = 'directus_request_failed';

  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`Directus ${method} ${path} -> ${status}: ${body.slice(0, 500)}`);
    this.name = 'DirectusRequestError';
  }
}
