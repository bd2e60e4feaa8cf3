export * from './config.js';
export { ConfigError } from './config-error.js';
export * from './logger.js';
export * from './metrics.js';
export * from './health-server.js';
export * from './tracing.js';
export * from './lifecycle.js';
