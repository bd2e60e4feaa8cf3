export * from './stack/local-stack.js';
export * from './stack/map-server.js';
export * from './stack/pipeline.js';
export * from './stack/ports.js';
export * from './stack/race.js';
export * from './stack/service-launcher.js';
