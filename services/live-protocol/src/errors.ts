import type { ClientAction } from './disconnects.js';

/**
 * Every `code` an `error` message carries, with what a client does about it. `then` is the next step;
 * `closes` is the close code that follows it when it answers an `auth` (a request sent before
 * authenticating is answered `unauthenticated` without a close).
 */
export const ERRORS = {
  /** The token is missing, malformed, forged or refused by Directus. */
  unauthenticated: { then: 'refresh_token', retryable: false, closes: 4401 },
  /** The token expired: send a fresh one with `auth` within the grace period, or the connection closes. */
  token_expired: { then: 'refresh_token', retryable: false, closes: 4401 },
  /** Directus refused this user this event. */
  forbidden: { then: 'stop', retryable: false, closes: undefined },
  /** No such event (or one the user may not know of). */
  not_found: { then: 'stop', retryable: false, closes: undefined },
  /** The message broke the protocol; after too many of them the connection closes with 4400. */
  bad_request: { then: 'stop', retryable: false, closes: undefined },
  /**
   * The gateway could not ask Directus now (busy, rate-limited, down): send the same request again after
   * `retry_after_ms` plus jitter (`backoffDelayMs`). A wait, not a refusal.
   */
  authorization_unavailable: { then: 'retry', retryable: true, closes: undefined },
  /** Too many requests on this connection: send the same request again after `retry_after_ms`. */
  rate_limited: { then: 'retry', retryable: true, closes: undefined },
  /**
   * Sent right before a 1001 close when the gateway drains (a deploy, a scale-in): reconnect to another
   * gateway after a random delay within `reconnect_within_ms`, so that a pod's viewers do not all arrive
   * at the others in the same second (the gateway spreads them in proportion to how many it drains).
   */
  going_away: { then: 'reconnect_elsewhere', retryable: false, closes: 1001 },
  /** A bug in the gateway: report it rather than repeat the request. */
  internal: { then: 'stop', retryable: false, closes: undefined },
} as const satisfies Record<string, { then: ClientAction | 'retry'; retryable: boolean; closes: number | undefined }>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** Error codes that ask the client to send the same request again a little later. */
export const RETRYABLE_ERROR_CODES: readonly ErrorCode[] = ERROR_CODES.filter((code) => ERRORS[code].retryable);

/** Error codes about the token (a fresh token is the way out; the connection closes with 4401 otherwise). */
export const TOKEN_ERROR_CODES: readonly ErrorCode[] = ERROR_CODES.filter((code) => ERRORS[code].then === 'refresh_token');

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, value);
}
