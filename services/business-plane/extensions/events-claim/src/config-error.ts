/** A PITWALL_EVENTS_CLAIM_* variable of Directus's environment is invalid; the message names it. */
export class EventsClaimConfigError extends Error {
  readonly code = 'events_claim_config_invalid';

  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'EventsClaimConfigError';
  }
}
