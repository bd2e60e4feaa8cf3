/**
 * What a client does when its connection ends:
 * - `reconnect`: open a new connection (after a short, jittered backoff) to the same address;
 * - `reconnect_elsewhere`: this gateway is going away: reconnect at once, the load balancer picks another;
 * - `refresh_token`: get a fresh access token (Directus /auth/refresh), then reconnect with it; when
 *   Directus refuses the refresh, stop and ask the user to log in;
 * - `stop`: do not reconnect automatically (a bug in the client, or a policy refusal).
 */
export type ClientAction = 'reconnect' | 'reconnect_elsewhere' | 'refresh_token' | 'stop';

/** One way the gateway ends a connection. */
export interface Disconnect {
  /** The close code the client sees. 1006 means no close frame: the socket is dropped. */
  readonly code: number;
  /** The close frame's reason text (empty when the socket is dropped). */
  readonly reason: string;
  /** Value of the `reason` label of pitwall_live_gateway_connections_closed_total. */
  readonly label: string;
  readonly action: ClientAction;
  /**
   * Dropped without a close frame: the frame would queue behind everything the client is not reading,
   * or the WebSocket layer itself refused the frame.
   */
  readonly forceful: boolean;
}

/** Close codes of the protocol (docs/interfaces.md), by name. */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  /** No close frame was received: the network, or a connection the gateway dropped on purpose. */
  abnormal: 1006,
  protocolViolation: 4400,
  unauthenticated: 4401,
  authTimeout: 4408,
} as const;

/**
 * THE table of disconnects: every place the gateway closes a socket names one of these, and clients
 * decide what to do from it. Several share a close code; the `error` message sent before the close
 * (when there is one) tells them apart.
 */
export const DISCONNECTS = {
  /** The gateway is shutting down (a deploy, a scale-in). */
  shutdown: { code: CLOSE_CODES.goingAway, reason: 'server going away', label: 'shutdown', action: 'reconnect_elsewhere', forceful: false },
  /** No accepted token within the gateway's authentication timeout. */
  auth_timeout: {
    code: CLOSE_CODES.authTimeout,
    reason: 'authentication timeout',
    label: 'auth_timeout',
    action: 'reconnect',
    forceful: false,
  },
  /**
   * Closed to make room: the gateway was full (or had as many connections waiting for authentication as
   * it keeps) and this was the oldest connection not yet authenticated. Unauthenticated sockets never
   * keep a viewer out.
   */
  crowded_out: {
    code: CLOSE_CODES.authTimeout,
    reason: 'crowded out before authenticating',
    label: 'crowded_out',
    action: 'reconnect',
    forceful: false,
  },
  /** The token was refused (forged, malformed, refused by Directus). */
  unauthenticated: {
    code: CLOSE_CODES.unauthenticated,
    reason: 'unauthenticated',
    label: 'unauthenticated',
    action: 'refresh_token',
    forceful: false,
  },
  /** The token expired and no fresh one came within the grace period. */
  token_expired: {
    code: CLOSE_CODES.unauthenticated,
    reason: 'token expired',
    label: 'token_expired',
    action: 'refresh_token',
    forceful: false,
  },
  /** A refreshed token belonged to another user. */
  user_changed: {
    code: CLOSE_CODES.unauthenticated,
    reason: 'user changed',
    label: 'user_changed',
    action: 'refresh_token',
    forceful: false,
  },
  /** Too many malformed or unknown messages. */
  protocol: {
    code: CLOSE_CODES.protocolViolation,
    reason: 'too many protocol errors',
    label: 'protocol',
    action: 'stop',
    forceful: false,
  },
  /** A binary frame: the protocol is JSON text. */
  binary: { code: CLOSE_CODES.protocolViolation, reason: 'binary frame', label: 'binary', action: 'stop', forceful: false },
  /** More messages before authentication than an unauthenticated connection may send. */
  unauthenticated_messages: {
    code: CLOSE_CODES.protocolViolation,
    reason: 'too many messages before authentication',
    label: 'unauthenticated_messages',
    action: 'stop',
    forceful: false,
  },
  /** A frame over PROTOCOL_LIMITS.maxMessageBytes, refused by the WebSocket layer before it is read. */
  oversized: { code: CLOSE_CODES.abnormal, reason: '', label: 'oversized', action: 'stop', forceful: true },
  /** Fell behind the live frames and did not catch up within the gateway's slow-client timeout. */
  slow: { code: CLOSE_CODES.abnormal, reason: '', label: 'slow', action: 'reconnect', forceful: true },
  /** Kept sending requests while not reading the replies (more unread bytes than the gateway keeps). */
  unread: { code: CLOSE_CODES.abnormal, reason: '', label: 'unread', action: 'reconnect', forceful: true },
} as const satisfies Record<string, Disconnect>;

export type DisconnectName = keyof typeof DISCONNECTS;

/**
 * What a client does after a close with this code (and, for codes several disconnects share, the same
 * action for all of them). 1000 is the client's own close; anything unknown is treated like a network
 * failure.
 */
export function actionForCloseCode(code: number): ClientAction {
  if (code === CLOSE_CODES.normal) return 'stop';
  for (const name of Object.keys(DISCONNECTS) as DisconnectName[]) {
    const disconnect: Disconnect = DISCONNECTS[name];
    if (disconnect.code === code && !disconnect.forceful) return disconnect.action;
  }
  return 'reconnect';
}

/**
 * Upgrade requests the gateway refuses with an HTTP status instead of opening the WebSocket. A client
 * sees them as a failed connection attempt (browsers do not expose the status).
 */
export const UPGRADE_REFUSALS = {
  /** The gateway is shutting down. */
  draining: { status: 503, label: 'rejected_draining', action: 'reconnect_elsewhere' },
  /** The gateway has as many authenticated connections as it takes (unauthenticated ones make room instead). */
  full: { status: 503, label: 'rejected_full', action: 'reconnect_elsewhere' },
  /** Too many connections from this client address. */
  address_full: { status: 429, label: 'rejected_address', action: 'reconnect' },
  /** The page's Origin is not one the gateway serves. */
  origin: { status: 403, label: 'rejected_origin', action: 'stop' },
} as const satisfies Record<string, { status: number; label: string; action: ClientAction }>;

export type UpgradeRefusalName = keyof typeof UPGRADE_REFUSALS;
