import { readEventsClaimConfig, EVENTS_CLAIM_ENV } from './config.js';
import type { HookContext, RegisterFunctions } from './directus.js';
import { EventsScope } from './scope.js';
import { EVENTS_COLLECTION } from './window.js';

/**
 * The Directus entry (package.json `directus:extension.path`). Adds the `pitwall_events` claim to every
 * access token Directus issues (the auth.jwt filter runs on login and on refresh). An invalid setting
 * throws here: Directus then logs that the hook could not be registered (and exits when
 * EXTENSIONS_MUST_LOAD=true), naming the variable.
 */
export default function registerEventsClaim({ filter, action }: RegisterFunctions, context: HookContext): void {
  const config = readEventsClaimConfig(context.env);
  if (!config.enabled) {
    context.logger.info({}, `pitwall events claim disabled (${EVENTS_CLAIM_ENV.enabled}=false): tokens carry no pitwall_events`);
    return;
  }
  const scope = new EventsScope({
    config,
    ItemsService: context.services.ItemsService,
    database: context.database,
    getSchema: () => context.getSchema(),
    logger: context.logger,
  });
  filter('auth.jwt', (payload, meta, eventContext) => scope.addClaim(payload, meta, eventContext));
  // Changes made through this Directus reach the next login at once; others (another Directus
  // instance, SQL straight into the table) within PITWALL_EVENTS_CLAIM_WINDOW_CACHE.
  for (const change of ['create', 'update', 'delete']) action(`${EVENTS_COLLECTION}.items.${change}`, () => scope.eventsChanged());
  context.logger.info({ config }, 'pitwall events claim: access tokens list the live and upcoming events their user may read');
}
