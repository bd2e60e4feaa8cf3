// The access-token claims this extension adds, and the one reader of them. The issuer (the hook) and
// every reader (the gateway, the load harness, clients) import the names from here.

/** Ids of the events (live or about to start) the token's user may read, as Directus decided at issue time. */
export const EVENTS_CLAIM = 'pitwall_events';
/** `true` when the user may read more events of the window than the claim lists (the cap was reached). */
export const EVENTS_PARTIAL_CLAIM = 'pitwall_events_partial';

export interface EventsClaim {
  /** Event ids, most recently started first. */
  events: number[];
  /** More readable events exist than are listed: an event not listed may still be readable (ask Directus). */
  partial: boolean;
}

/**
 * The events claim of a token payload, or undefined when the payload has none or a malformed one (a
 * token issued without the extension, or by a Directus whose extension failed for this login): then
 * nothing may be concluded from the token, ask Directus.
 */
export function eventsClaimOf(payload: Readonly<Record<string, unknown>>): EventsClaim | undefined {
  const events = payload[EVENTS_CLAIM];
  if (!Array.isArray(events)) return undefined;
  const ids: readonly unknown[] = events;
  if (!ids.every((id): id is number => typeof id === 'number' && Number.isSafeInteger(id))) return undefined;
  // A copy of the exact length: the gateway keeps one per open session (one built by push has spare room).
  return { events: ids.slice(), partial: payload[EVENTS_PARTIAL_CLAIM] === true };
}

/** The claims of a Directus access token to a JSON object (no verification), undefined when it is not a JWT. */
function decodePayload(token: string): Record<string, unknown> | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const binary = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const json: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The events claim of an access token WITHOUT verifying its signature: for clients, tests and the load
 * harness that want to see what they were given. Never authorize from it; verify the token first and
 * use eventsClaimOf on the verified payload.
 */
export function readEventsClaim(accessToken: string): EventsClaim | undefined {
  const payload = decodePayload(accessToken);
  return payload ? eventsClaimOf(payload) : undefined;
}
