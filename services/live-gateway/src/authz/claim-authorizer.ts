import type { GatewayMetrics } from '../metrics.js';
import type { AuthorizationDecision, AuthorizationRequest, AuthorizationSource } from './authorization.js';

const ALLOWED: AuthorizationDecision = Object.freeze({ result: 'allowed', fromToken: true });

/**
 * Authorizes from the verified access token itself: Directus's events-claim extension lists in
 * `pitwall_events` the live and upcoming events the user may read, as Directus's own permissions
 * decided when it issued the token (login or refresh). A listed event is `allowed` without a Directus
 * call, for as long as the token lives (a permission revoked in Directus leaves the claim at the next
 * refresh, so a listed event is at most the token's lifetime, ACCESS_TOKEN_TTL, out of date). Everything
 * else has no opinion and goes to the next source (Directus): an event not listed (outside the claim's
 * window, or simply not readable), any event of a partial claim (`pitwall_events_partial`: the user may
 * read more than the token could list), and a token without the claim (Directus without the extension,
 * or one whose extension failed for that login).
 *
 * Only ever sees claims of a token the verifier accepted (signature checked locally with
 * DIRECTUS_SECRET, or Directus answered /users/me with it): a forged claim never gets here.
 */
export class ClaimAuthorizer implements AuthorizationSource {
  readonly name = 'claim';

  constructor(private readonly metrics: GatewayMetrics) {}

  decide({ principal, eventId }: AuthorizationRequest): Promise<AuthorizationDecision | undefined> {
    const claim = principal.eventsClaim;
    const result = claim === undefined ? 'no_claim' : claim.partial ? 'partial' : claim.events.includes(eventId) ? 'allowed' : 'not_listed';
    this.metrics.claimAuthorizations.inc({ result });
    return Promise.resolve(result === 'allowed' ? ALLOWED : undefined);
  }
}
