/**
 * Limits of the protocol itself, the same on every gateway. A deployment's own policy (subscriptions per
 * connection, request rates, connections per address) is the gateway's configuration, not part of this.
 */
export const PROTOCOL_LIMITS = {
  /**
   * Largest client message, in bytes of its UTF-8 text. The gateway's WebSocket layer refuses a bigger
   * frame by dropping the connection (the client sees 1006) before any of it is handled.
   */
  maxMessageBytes: 4096,
  /** Longest `uid` string (a number is accepted as is). */
  maxUidLength: 128,
  /** Longest access token: it has to fit in one message. */
  maxTokenLength: 4000,
  /** Longest `since` cursor a client may send back (cursors the gateway makes are far shorter). */
  maxCursorLength: 1024,
  /**
   * Largest `history_seconds` a subscribe may ask for. A gateway holds less (GATEWAY_HISTORY_SECONDS,
   * 120 by default) and answers with what it holds.
   */
  maxHistorySeconds: 3600,
} as const;
