/** Directus could not answer (timeout, refused connection, 5xx). Code `DIRECTUS_UNAVAILABLE`. */
export class DirectusUnavailableError extends Error {
  readonly code = 'DIRECTUS_UNAVAILABLE';
  override readonly name = 'DirectusUnavailableError';
}
