/**
 * An access token that is not accepted: forged, malformed, another algorithm, wrong issuer, or
 * expired (`expired` true). Code `AUTHENTICATION_FAILED`.
 */
export class AuthenticationError extends Error {
  readonly code = 'AUTHENTICATION_FAILED';
  override readonly name = 'AuthenticationError';
  constructor(
    message: string,
    readonly expired = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
