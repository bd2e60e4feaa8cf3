import type { Span } from '@opentelemetry/api';
import type { WebSocket } from 'uWebSockets.js';
import type { Principal } from './auth/token-verifier.js';
import type { ClientMessage } from './protocol/client-message.js';

/** Why a connection ended, for the connections_closed_total metric. */
export type CloseReason = 'client' | 'auth_timeout' | 'unauthenticated' | 'token_expired' | 'protocol' | 'slow' | 'shutdown';

export interface Subscription {
  /** When the permission is next re-validated, ms. */
  nextCheckAtMs: number;
}

/** A client that fell behind: it gets the latest position of each changed device once it drains. */
export interface Conflation {
  sinceMs: number;
  /** Devices changed since the last flush, per subscribed event. */
  dirty: Map<number, Set<string>>;
}

/** State of one client connection, from upgrade to close. Held as the uWS socket's user data. */
export class Connection {
  ws: WebSocket<ConnectionData> | undefined;
  closed = false;
  closeReason: CloseReason | undefined;
  principal: Principal | undefined;
  token: string | undefined;
  /** Set while the token is expired and the grace period runs. */
  expired = false;
  authTimer: NodeJS.Timeout | undefined;
  expiryTimer: NodeJS.Timeout | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  readonly subscriptions = new Map<number, Subscription>();
  /** Subscribe requests being authorized (they count against the subscription limit). */
  pendingSubscribes = 0;
  /** Bumped by each unsubscribe: a subscribe authorized across one is not applied. Made on first use. */
  cancelEpoch: Map<number, number> | undefined;
  protocolErrors = 0;
  subscribeTokens: number;
  subscribeRefillAtMs: number;
  conflation: Conflation | undefined;
  /** The `access_token` query parameter of the upgrade request, verified once the socket is open. */
  queryToken: string | undefined;
  /** Requests received while the query token is verified, handled in order once it is. */
  held: ClientMessage[] | undefined;
  /** Trace span from upgrade to authentication (or refusal, or close). */
  connectSpan: Span | undefined;

  constructor(
    readonly id: number,
    subscribeBurst: number,
    nowMs: number,
  ) {
    this.subscribeTokens = subscribeBurst;
    this.subscribeRefillAtMs = nowMs;
  }

  get authenticated(): boolean {
    return this.principal !== undefined;
  }

  clearTimers(): void {
    clearTimeout(this.authTimer);
    clearTimeout(this.expiryTimer);
    clearTimeout(this.graceTimer);
    this.authTimer = this.expiryTimer = this.graceTimer = undefined;
  }
}

export interface ConnectionData {
  connection: Connection;
}
