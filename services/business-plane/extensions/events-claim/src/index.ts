// What other parts of pitwall import: the claim's names and its reader, and the extension's settings
// (for documentation and tests). Directus loads dist/hook.js instead.
export * from './claim.js';
export {
  EVENTS_CLAIM_DEFAULTS,
  EVENTS_CLAIM_ENV,
  MAX_EVENTS_LIMIT,
  parseDuration,
  readEventsClaimConfig,
  type EventsClaimConfig,
} from './config.js';
export { EventsClaimConfigError } from './config-error.js';
