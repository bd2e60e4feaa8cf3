import { EventsClaimConfigError } from './config-error.js';

// The extension's settings, from Directus's own environment (its env file, container env or *_FILE
// variables: whatever Directus reads, the hook context's `env` holds). Read once when Directus
// registers the hook; a bad value stops the registration with an error naming the variable.

export interface EventsClaimConfig {
  /** false: the hook registers nothing (tokens carry no claim, the gateway asks Directus as before). */
  enabled: boolean;
  /** Events starting within this long from now are in the window ("about to start"). */
  leadMs: number;
  /** Events stay in the window this long after their ends_at. */
  graceMs: number;
  /** An event without ends_at counts as ending this long after its starts_at. */
  openEndedMs: number;
  /** Most event ids a token lists; beyond it the token says it is partial. */
  maxEvents: number;
  /** Most window events considered per login (newest start first); beyond it every claim is partial. */
  windowMax: number;
  /** How long the window's event ids (the same for every user) are reused across logins; 0: never. */
  windowCacheMs: number;
}

export const EVENTS_CLAIM_ENV = {
  enabled: 'PITWALL_EVENTS_CLAIM_ENABLED',
  lead: 'PITWALL_EVENTS_CLAIM_LEAD',
  grace: 'PITWALL_EVENTS_CLAIM_GRACE',
  openEnded: 'PITWALL_EVENTS_CLAIM_OPEN_ENDED',
  maxEvents: 'PITWALL_EVENTS_CLAIM_MAX',
  windowMax: 'PITWALL_EVENTS_CLAIM_WINDOW_MAX',
  windowCache: 'PITWALL_EVENTS_CLAIM_WINDOW_CACHE',
} as const;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * Upper bound of PITWALL_EVENTS_CLAIM_MAX: 200 ids of up to 7 digits keep a token well below the live
 * gateway's 4096-byte message limit when it is sent in an `auth` message.
 */
export const MAX_EVENTS_LIMIT = 200;

export const EVENTS_CLAIM_DEFAULTS: EventsClaimConfig = {
  enabled: true,
  // Longer than an access token lives (ACCESS_TOKEN_TTL, 15 min by default): an event that starts
  // before the token's next refresh is already listed.
  leadMs: 2 * HOUR,
  graceMs: 30 * MINUTE,
  openEndedMs: DAY,
  maxEvents: 100,
  windowMax: 1000,
  windowCacheMs: 10_000,
};

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: MINUTE, h: HOUR, d: DAY };

/** Directus's duration syntax: a number of milliseconds, or `<n>ms|s|m|h|d` ('15m', '2h'). */
export function parseDuration(variable: string, value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    const match = /^(\d+)\s*(ms|s|m|h|d)?$/.exec(value.trim());
    if (match?.[1]) return Number(match[1]) * (UNITS[match[2] ?? 'ms'] ?? 1);
  }
  throw new EventsClaimConfigError(variable, `${JSON.stringify(value)} is not a duration (a number of ms, or like 30s, 15m, 2h, 1d)`);
}

function parseInteger(variable: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new EventsClaimConfigError(variable, `${JSON.stringify(value)} is not an integer from ${min} to ${max}`);
  }
  return n;
}

function parseBoolean(variable: string, value: unknown): boolean {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new EventsClaimConfigError(variable, `${JSON.stringify(value)} is neither true nor false`);
}

function bounded(variable: string, ms: number, maxMs: number, maxText: string): number {
  if (ms > maxMs) throw new EventsClaimConfigError(variable, `${ms} ms is more than ${maxText}`);
  return ms;
}

/** The settings from Directus's environment (the hook context's `env`); unset variables take their default. */
export function readEventsClaimConfig(env: Readonly<Record<string, unknown>>): EventsClaimConfig {
  const d = EVENTS_CLAIM_DEFAULTS;
  const value = (name: string): unknown => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const duration = (name: string, fallback: number, maxMs: number, maxText: string): number => {
    const raw = value(name);
    return raw === undefined ? fallback : bounded(name, parseDuration(name, raw), maxMs, maxText);
  };
  const e = EVENTS_CLAIM_ENV;
  const enabledRaw = value(e.enabled);
  const maxRaw = value(e.maxEvents);
  const windowRaw = value(e.windowMax);
  const maxEvents = maxRaw === undefined ? d.maxEvents : parseInteger(e.maxEvents, maxRaw, 1, MAX_EVENTS_LIMIT);
  const windowMax = windowRaw === undefined ? Math.max(d.windowMax, maxEvents) : parseInteger(e.windowMax, windowRaw, 1, 10_000);
  if (windowMax < maxEvents) {
    throw new EventsClaimConfigError(e.windowMax, `${windowMax} is less than ${e.maxEvents} (${maxEvents})`);
  }
  return {
    enabled: enabledRaw === undefined ? d.enabled : parseBoolean(e.enabled, enabledRaw),
    leadMs: duration(e.lead, d.leadMs, 7 * DAY, '7 days'),
    graceMs: duration(e.grace, d.graceMs, 7 * DAY, '7 days'),
    openEndedMs: duration(e.openEnded, d.openEndedMs, 30 * DAY, '30 days'),
    maxEvents,
    windowMax,
    windowCacheMs: duration(e.windowCache, d.windowCacheMs, 10 * MINUTE, '10 minutes'),
  };
}
