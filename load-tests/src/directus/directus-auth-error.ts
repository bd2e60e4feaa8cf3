/** Directus refused a login or refresh, or answered something that is not a session. */
export class DirectusAuthError extends Error {
  readonly code = 'directus_auth_failed';

  constructor(message: string) {
    super(message);
    this.name = 'DirectusAuthError';
  }
}
