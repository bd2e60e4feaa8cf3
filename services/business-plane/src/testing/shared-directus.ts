import { inject } from 'vitest';
import type { DirectusAdmin } from '../seed/access.js';
import type { Seeded } from '../seed/seed.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The e2e run's shared, seeded Directus (never stopped by a test: start your own with startDirectus for that). */
    directusUrl: string;
    /** The SECRET its access tokens are signed with (the gateway's DIRECTUS_SECRET). */
    directusSecret: string;
    /** What seedDirectus made on it: tokens, demo users, events, devices, entries, policies. */
    directusSeed: Seeded;
  }
}

/** Base URL of the e2e run's shared Directus. */
export function sharedDirectusUrl(): string {
  return inject('directusUrl');
}

/** SECRET of the shared Directus (HS256 key of its access tokens). */
export function sharedDirectusSecret(): string {
  return inject('directusSecret');
}

/** The seed of the shared Directus. Change access only for users you create (createEventViewer). */
export function sharedDirectusSeed(): Seeded {
  return inject('directusSeed');
}

/** URL and administrator token of the shared Directus, for setEventAccess / createEventViewer. */
export function sharedDirectusAdmin(): DirectusAdmin {
  return { url: inject('directusUrl'), adminToken: inject('directusSeed').adminToken };
}
