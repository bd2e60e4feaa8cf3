/**
 * Directus could not answer: timeout, refused connection, 429, 5xx, any status that is not an answer
 * (see DirectusClient), or too many calls already waiting. Never a refusal. Code `DIRECTUS_UNAVAILABLE`.
 */
export class DirectusUnavailableError extends Error {
  readonly code = 'DIRECTUS_UNAVAILABLE';
  override readonly name = 'DirectusUnavailableError';
  constructor(
    message: string,
    /** When Directus said to come back (Retry-After of a 429 or 503), ms. */
    readonly retryAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
