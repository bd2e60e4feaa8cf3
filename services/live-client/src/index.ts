// @pitwall/live-client: the live gateway's client for browsers and Node (README.md). The protocol's
// types come from @pitwall/live-protocol and are re-exported for convenience.
export * from './live-client.js';
export type { Clock, SocketFactory, SocketLike } from './runtime.js';
export type { Cursor, WirePosition, ErrorCode, UnsubscribeReason, BackoffPolicy } from '@pitwall/live-protocol';
