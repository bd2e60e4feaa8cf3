// @pitwall/live-protocol: the live gateway's WebSocket protocol, shared by the gateway, its clients (the
// live map, @pitwall/live-client) and the load tests. No dependencies and no runtime-specific API: it runs
// in Node, browsers and k6 alike.
export * from './backoff.js';
export * from './disconnects.js';
export * from './errors.js';
export * from './limits.js';
export * from './messages.js';
