export * from './backoff.js';
export * from './client.js';
export * from './errors.js';
export * from './groups.js';
export * from './xinfo.js';
