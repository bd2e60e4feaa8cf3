import type { Principal } from '../auth/token-verifier.js';
import type { Interest } from '../util/interest.js';

export type AuthorizationResult = 'allowed' | 'forbidden' | 'not_found' | 'unavailable';

export interface AuthorizationDecision {
  result: AuthorizationResult;
  /** With `unavailable`: when asking again may succeed (Directus's Retry-After, or the gateway's estimate), ms. */
  retryAfterMs?: number;
  /**
   * Decided from the verified token itself (its `pitwall_events` claim): the answer holds as long as the
   * token does, so the subscription needs no periodic re-validation; a refreshed token decides again.
   */
  fromToken?: boolean;
}

export interface AuthorizationRequest {
  principal: Principal;
  /** The access token the principal was verified from (sent to Directus on the user's behalf). */
  token: string;
  eventId: number;
  /** A re-validation of a live subscription: no cached answer may be used. */
  fresh: boolean;
  /** Who waits for the answer (the connection): a call still queued when it has gone is dropped. */
  interest?: Interest;
}

/**
 * One way of deciding whether a principal may see an event. `undefined`: no opinion, ask the next
 * source (for example a token claim that lists the user's events decides for the events it lists and
 * leaves the others to Directus).
 */
export interface AuthorizationSource {
  readonly name: string;
  decide(request: AuthorizationRequest): Promise<AuthorizationDecision | undefined>;
}

/** What a session asks: the first source with an opinion decides; none: `unavailable`. */
export class Authorizer {
  constructor(private readonly sources: readonly AuthorizationSource[]) {}

  async authorize(request: AuthorizationRequest): Promise<AuthorizationDecision> {
    for (const source of this.sources) {
      const decision = await source.decide(request);
      if (decision !== undefined) return decision;
    }
    return { result: 'unavailable' };
  }
}
