/** Directus could not be installed, bootstrapped or started; the message carries its output. */
export class DirectusStartError extends Error {
  readonly code = 'directus_start_failed';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DirectusStartError';
  }
}
