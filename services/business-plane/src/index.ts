export * from './directus/auth.js';
export * from './directus/extensions.js';
export * from './directus/install.js';
export { DirectusRest } from './directus/rest.js';
export * from './directus/server.js';
export { DIRECTUS_ADMIN_EMAIL, DIRECTUS_ADMIN_PASSWORD, SNAPSHOT_FILE } from './directus/template.js';
export * from './errors/directus-request-error.js';
export * from './errors/directus-start-error.js';
export {
  createEventViewer,
  eventReadPermissions,
  setEventAccess,
  setUserActive,
  type DemoUser,
  type DirectusAdmin,
} from './seed/access.js';
export * from './seed/seed.js';
export * from './testing/directus-call-counter.js';
export * from './testing/shared-directus.js';
