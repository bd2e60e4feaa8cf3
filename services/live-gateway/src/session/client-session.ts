import { SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import { DISCONNECTS, parseClientMessage, type ClientMessage, type DisconnectName, type ErrorCode, type Uid } from '@pitwall/live-protocol';
import type { Logger } from '@pitwall/platform';
import { AuthenticationError } from '../auth/authentication-error.js';
import type { Principal, TokenVerifier } from '../auth/token-verifier.js';
import type { AuthorizationDecision, Authorizer } from '../authz/authorization.js';
import { DirectusUnavailableError } from '../directus/directus-unavailable-error.js';
import type { EventEntries } from '../events/event-directory.js';
import type { HubClient } from '../fanout/hub-client.js';
import type { JoinRequest, LiveHub } from '../fanout/live-hub.js';
import type { GatewayMetrics } from '../metrics.js';
import { authOkMessage, errorMessage, pongMessage, unsubscribedMessage, type ErrorDetails } from '../protocol/server-message.js';
import type { Interest } from '../util/interest.js';
import type { SharedDeadlines } from '../util/shared-deadlines.js';
import { TokenBucket } from '../util/token-bucket.js';
import type { SessionTransport } from './session-transport.js';

export interface SessionLimits {
  maxSubscriptions: number;
  /** Subscribe requests per second (burst twice that). */
  subscribeRatePerSecond: number;
  /** `auth` messages per minute (burst AUTH_BURST). */
  authRatePerMinute: number;
  /** Malformed or unknown messages tolerated before close 4400. */
  maxProtocolErrors: number;
  authTimeoutMs: number;
  tokenExpiryGraceMs: number;
  /** Unread bytes at which a client that sends a request is dropped. */
  maxUnreadBytes: number;
  revalidateIntervalMs: number;
}

/** The request rates of SessionLimits as the pod's token-bucket policies (a session keeps one number per bucket). */
export interface SessionRates {
  subscribe: TokenBucket;
  auth: TokenBucket;
}

/** What every session of a gateway shares (one object, so a session costs one pointer for all of it). */
export interface SessionContext {
  limits: SessionLimits;
  /** sessionRates(limits). */
  rates: SessionRates;
  verifier: TokenVerifier;
  authorizer: Authorizer;
  directory: { load(eventId: number): Promise<EventEntries> };
  hub: LiveHub;
  metrics: GatewayMetrics;
  logger: Logger;
  tracer: Tracer;
  /** The pod's token-expiry timers (one per distinct expiry instant); calls onTokenExpired. */
  expiries: SharedDeadlines<ClientSession>;
  /** Called once, when a session authenticates for the first time. */
  onAuthenticated(session: ClientSession): void;
}

type AuthOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; code: 'unauthenticated' | 'token_expired' | 'unavailable'; reason: string; retryAfterMs?: number };

/** A subscribe being authorized; an unsubscribe meanwhile cancels it (the later request wins). */
interface PendingSubscribe {
  cancelled: boolean;
}

/** Messages kept while a token is verified (handled in order afterwards); more is a protocol error. */
const MAX_HELD_MESSAGES = 16;
/**
 * Messages a connection may send before it is authenticated (auth attempts included): enough for an
 * `auth`, a retry or two and requests sent right behind it; an unauthenticated socket costs little.
 */
const MAX_MESSAGES_BEFORE_AUTH = 8;
/** Saved-up `auth` attempts of a connection. */
const AUTH_BURST = 3;
export function sessionRates(limits: SessionLimits): SessionRates {
  return {
    subscribe: new TokenBucket(limits.subscribeRatePerSecond, limits.subscribeRatePerSecond * 2),
    auth: new TokenBucket(limits.authRatePerMinute / 60, AUTH_BURST),
  };
}

/**
 * Re-validation time of a live subscription authorized from the token's claim: never (the token's
 * lifetime bounds it; the next token decides again, see reauthorizeClaimed). Such a subscription has
 * no entry in ClientSession.rechecks.
 */
const BY_TOKEN = Number.POSITIVE_INFINITY;

/**
 * One client connection's protocol state, from open to close, without the socket: authentication
 * (query token or `auth` message, refresh, expiry and its grace period), the limits (message budget
 * before authentication, unread bytes, request rates, protocol errors, subscriptions), the subscribe
 * flow (authorization through the Authorizer's sources, entries, joining the hub) with its periodic
 * re-validation, and the messages held while a token is verified. The transport adapter feeds it
 * frames and closes; every close goes through disconnect() with a name from the protocol's table.
 *
 * A subscription the token's `pitwall_events` claim authorized is never re-validated periodically: it
 * stands while the token does, and each refreshed token decides again (an event that left the claim is
 * checked at Directus and ended with `unsubscribed` `forbidden` when refused). The session is the
 * Interest of its Directus calls: one still queued when the socket has closed is dropped.
 */
export class ClientSession implements HubClient, Interest {
  private socket: SessionTransport | undefined;
  private closed = false;
  /** Label of the disconnect the gateway chose; unset: the client (or the network) closed. */
  private closeLabel: string | undefined;
  private principal: Principal | undefined;
  private token: string | undefined;
  /** The token expired; delivery is held and the grace period runs. */
  private expired = false;
  /**
   * The authentication deadline until the first accepted token, afterwards the grace period of an
   * expired token: never both at once.
   */
  private timer: NodeJS.Timeout | undefined;
  /** Requests received while a token is verified; undefined when none is. */
  private held: ClientMessage[] | undefined;
  private messagesBeforeAuth = 0;
  private protocolErrors = 0;
  /** The subscribe bucket's state (context.rates.subscribe): when it is full again; 0: full. */
  private subscribeFullAtMs = 0;
  /** The auth bucket's state (context.rates.auth). */
  private authFullAtMs = 0;
  /**
   * Re-validation times of the live subscriptions Directus authorized: event id -> when its permission
   * is next re-validated (ms). The live subscriptions are the hub's (context.hub.eventsOf); one the
   * token's claim authorized has no entry here (BY_TOKEN). Made on first use, dropped when empty.
   */
  private rechecks: Map<number, number> | undefined;
  /** Subscribes being authorized, at most maxSubscriptions of them. Made on first use. */
  private pending: Map<number, PendingSubscribe> | undefined;
  private pendingCount = 0;
  /** Trace span from open to authentication (or refusal, or close). */
  private connectSpan: Span | undefined;

  constructor(
    readonly id: number,
    /** The client's address (per-address connection cap). */
    readonly address: string,
    private readonly context: SessionContext,
    /** The `access_token` query parameter of the upgrade, verified once the socket is open. */
    private queryToken: string | undefined,
  ) {}

  get transport(): SessionTransport | undefined {
    return this.socket;
  }

  get authenticated(): boolean {
    return this.principal !== undefined;
  }

  /** Interest: whether answers for this connection are still wanted (it has not closed). */
  get active(): boolean {
    return !this.closed;
  }

  get subscriptionCount(): number {
    return this.context.hub.eventsOf(this)?.length ?? 0;
  }

  /** The socket is open: the authentication deadline starts, and a query token is verified. */
  open(transport: SessionTransport): void {
    this.socket = transport;
    const { limits, tracer } = this.context;
    this.connectSpan = tracer.startSpan('live.connect', {
      attributes: { 'pitwall.connection': this.id, 'pitwall.token_in_query': this.queryToken !== undefined },
    });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.authenticated) return;
      this.send(errorMessage('unauthenticated', `no accepted access token within ${limits.authTimeoutMs} ms`));
      this.disconnect('auth_timeout');
    }, limits.authTimeoutMs);
    const token = this.queryToken;
    this.queryToken = undefined;
    if (token !== undefined) {
      this.messagesBeforeAuth++;
      this.startAuth(token, undefined);
    }
  }

  /** A text frame from the client. */
  onText(text: string): void {
    const socket = this.socket;
    if (this.closed || socket === undefined) return;
    // Replies to a client that does not read pile up in memory: it is dropped instead.
    if (socket.bufferedAmount() > this.context.limits.maxUnreadBytes) {
      this.disconnect('unread');
      return;
    }
    if (!this.authenticated && ++this.messagesBeforeAuth > MAX_MESSAGES_BEFORE_AUTH) {
      this.context.metrics.messagesRejected.inc({ reason: 'unauthenticated' });
      this.send(errorMessage('unauthenticated', `at most ${MAX_MESSAGES_BEFORE_AUTH} messages before authentication`));
      this.disconnect('unauthenticated_messages');
      return;
    }
    const parsed = parseClientMessage(text);
    if (!parsed.ok) {
      this.protocolError(parsed.reason, parsed.uid);
      return;
    }
    if (this.held !== undefined) {
      // A token is being verified: keep the order the client sent things in.
      if (this.held.length >= MAX_HELD_MESSAGES) this.protocolError('too many messages while the token is verified', parsed.message.uid);
      else this.held.push(parsed.message);
      return;
    }
    this.handle(parsed.message);
  }

  /** A binary frame: not part of the protocol. */
  onBinary(): void {
    if (this.closed) return;
    this.context.metrics.messagesRejected.inc({ reason: 'binary' });
    this.send(errorMessage('bad_request', 'binary frames are not part of the protocol; send JSON text'));
    this.disconnect('binary');
  }

  /** The socket can take more: a conflated client may catch up. */
  onDrain(): void {
    this.context.hub.onDrain(this);
  }

  /**
   * The socket closed (by disconnect(), the client, or the network). `message` is uWS's reason text;
   * a frame over the protocol's size limit is refused by uWS itself before this session sees it.
   */
  onClosed(code: number, message: string): void {
    if (this.closed) return;
    this.closed = true;
    const label = this.closeLabel ?? (message === 'Received too big message' ? DISCONNECTS.oversized.label : 'client');
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.principal !== undefined) this.context.expiries.delete(this.principal.expiresAtMs, this);
    this.held = undefined;
    this.context.hub.removeClient(this);
    this.rechecks = undefined;
    this.socket = undefined;
    this.endConnectSpan(label);
    this.context.metrics.connectionsClosed.inc({ reason: label });
    this.context.logger.debug({ connection: this.id, code, reason: label }, 'connection closed');
  }

  /** Ends the connection the way the protocol's table says for `name`. Idempotent. */
  /**
   * The drain: `going_away` with the window to reconnect within, then 1001. A client that cannot read
   * the message still reconnects elsewhere on 1001 (its own default spread).
   */
  goAway(reconnectWithinMs: number): void {
    if (this.closed || this.closeLabel !== undefined) return;
    this.sendError('going_away', 'server going away: reconnect to another gateway', { reconnectWithinMs });
    this.disconnect('shutdown');
  }

  disconnect(name: DisconnectName): void {
    const socket = this.socket;
    if (this.closed || socket === undefined || this.closeLabel !== undefined) return;
    const disconnect = DISCONNECTS[name];
    this.closeLabel = disconnect.label;
    if (disconnect.forceful) socket.terminate();
    else socket.end(disconnect.code, disconnect.reason);
  }

  /** Re-authorizes the subscriptions that are due; a revoked one ends with `unsubscribed` `forbidden`. */
  revalidateDue(nowMs: number): void {
    const rechecks = this.rechecks;
    const principal = this.principal;
    const token = this.token;
    if (rechecks === undefined || principal === undefined || token === undefined || this.expired) return;
    for (const [eventId, dueAtMs] of rechecks) {
      if (dueAtMs > nowMs) continue;
      rechecks.set(eventId, this.nextCheckAt());
      this.revalidate(principal, token, eventId);
    }
  }

  /**
   * Asks the authorizer again about a live subscription with no cached answer: a refusal ends it with
   * `unsubscribed` `forbidden`; `unavailable` (429, 5xx, timeouts) keeps it until the next try; an
   * answer from the (current) token's claim makes it claim-authorized from then on.
   */
  private revalidate(principal: Principal, token: string, eventId: number): void {
    void this.context.authorizer.authorize({ principal, token, eventId, fresh: true, interest: this }).then(
      ({ result, fromToken }) => {
        // `claim`: the current token still lists the event (decided without a call).
        this.context.metrics.revalidations.inc({ result: fromToken === true ? 'claim' : result });
        if (this.closed || !this.context.hub.isJoined(this, eventId)) return;
        if (result === 'allowed') {
          if (fromToken === true && principal === this.principal) this.setRecheck(eventId, BY_TOKEN);
          return;
        }
        // Only Directus's refusals end a subscription.
        if (result !== 'forbidden' && result !== 'not_found') return;
        this.context.logger.info({ connection: this.id, eventId, result }, 'permission revoked; subscription ended');
        this.endSubscription(eventId, 'forbidden', undefined);
      },
      (err: unknown) => this.context.logger.error({ err, eventId }, 're-validation failed'),
    );
  }

  /**
   * A refreshed token replaces the claim: every subscription the old token's claim authorized is decided
   * again for the new one. Still listed: it stays, with no call. Left the claim (revoked, out of the
   * window, or the claim became partial or absent): Directus decides now (the fallback), and it is
   * re-validated periodically like any Directus-authorized subscription until a claim lists it again.
   */
  private reauthorizeClaimed(principal: Principal, token: string): void {
    const live = this.context.hub.eventsOf(this);
    if (live === undefined) return;
    for (const eventId of [...live]) {
      if (this.rechecks?.has(eventId) === true) continue;
      // Not claim-authorized any more unless the new token says so (an unavailable Directus retries then).
      this.setRecheck(eventId, this.nextCheckAt());
      this.revalidate(principal, token, eventId);
    }
  }

  private handle(request: ClientMessage): void {
    if (request.type === 'auth') {
      this.startAuth(request.access_token, request.uid);
      return;
    }
    if (!this.authenticated) {
      this.context.metrics.messagesRejected.inc({ reason: 'unauthenticated' });
      this.send(errorMessage('unauthenticated', 'send {"type":"auth","access_token":...} first', { uid: request.uid }));
      return;
    }
    switch (request.type) {
      case 'ping':
        this.send(pongMessage(request.uid));
        return;
      case 'subscribe':
        this.subscribe(request.event_id, request.uid, { since: request.since, historySeconds: request.history_seconds });
        return;
      case 'unsubscribe':
        this.unsubscribe(request.event_id, request.uid);
        return;
    }
  }

  // Authentication

  private startAuth(token: string, uid: Uid | undefined): void {
    const { rates, metrics } = this.context;
    const now = Date.now();
    const bucket = rates.auth.take(this.authFullAtMs, now);
    if (bucket === undefined) {
      metrics.authentications.inc({ result: 'rate_limited' });
      this.sendError('rate_limited', 'too many auth messages; slow down', { uid, retryAfterMs: rates.auth.waitMs(this.authFullAtMs, now) });
      return;
    }
    this.authFullAtMs = bucket;
    // One verification at a time; what the client sends meanwhile waits its turn.
    this.held = [];
    void this.authenticate(token).then((outcome) => {
      if (this.closed) return;
      this.applyAuth(token, outcome, uid);
      this.releaseHeld();
    });
  }

  /** Handles the requests held during a verification, in order, until one of them is another `auth`. */
  private releaseHeld(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (let i = 0; i < held.length && !this.closed; i++) {
      this.handle(held[i] as ClientMessage);
      const waiting = this.heldQueue();
      if (waiting !== undefined) {
        // That was another auth: the rest waits for it.
        waiting.push(...held.slice(i + 1));
        return;
      }
    }
  }

  /** The held requests now (a read TypeScript does not narrow across the handle() above). */
  private heldQueue(): ClientMessage[] | undefined {
    return this.held;
  }

  /** Verifies a token; never throws. */
  private authenticate(token: string): Promise<AuthOutcome> {
    const { tracer, verifier, metrics, logger } = this.context;
    return tracer.startActiveSpan('live.auth', async (span: Span) => {
      let outcome: AuthOutcome;
      try {
        outcome = { ok: true, principal: await verifier.verify(token, this) };
        span.setAttribute('enduser.id', outcome.principal.userId);
      } catch (err) {
        if (err instanceof AuthenticationError) {
          outcome = { ok: false, code: err.expired ? 'token_expired' : 'unauthenticated', reason: err.message };
        } else if (err instanceof DirectusUnavailableError) {
          outcome = { ok: false, code: 'unavailable', reason: err.message, retryAfterMs: err.retryAfterMs };
        } else {
          logger.error({ err }, 'token verification failed unexpectedly');
          outcome = { ok: false, code: 'unavailable', reason: 'token verification failed' };
        }
        span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason });
      }
      const result = outcome.ok
        ? 'ok'
        : outcome.code === 'token_expired'
          ? 'expired'
          : outcome.code === 'unavailable'
            ? 'unavailable'
            : 'invalid';
      metrics.authentications.inc({ result });
      span.setAttribute('pitwall.result', result);
      span.end();
      return outcome;
    });
  }

  private applyAuth(token: string, outcome: AuthOutcome, uid: Uid | undefined): void {
    if (!outcome.ok) {
      if (outcome.code === 'unavailable') {
        // Not the client's fault: it may retry. The authentication deadline still runs for a new
        // connection; an authenticated one keeps its current token.
        this.sendError('authorization_unavailable', `cannot verify the token now: ${outcome.reason}`, {
          uid,
          retryAfterMs: outcome.retryAfterMs,
        });
        return;
      }
      this.sendError(outcome.code, outcome.reason, { uid });
      this.disconnect(outcome.code === 'token_expired' ? 'token_expired' : 'unauthenticated');
      return;
    }
    const { principal } = outcome;
    if (this.principal !== undefined && this.principal.userId !== principal.userId) {
      this.sendError('unauthenticated', 'a refreshed token must belong to the same user', { uid });
      this.disconnect('user_changed');
      return;
    }
    const previous = this.principal;
    const first = previous === undefined;
    this.principal = principal;
    this.token = token;
    if (first) {
      this.endConnectSpan('authenticated');
      this.context.onAuthenticated(this);
    }
    if (previous !== undefined) this.context.expiries.delete(previous.expiresAtMs, this);
    // The authentication deadline (first token) or the grace period (refresh) is over.
    clearTimeout(this.timer);
    this.timer = undefined;
    this.context.expiries.add(principal.expiresAtMs, this);
    this.send(authOkMessage(principal.expiresAtMs, uid));
    if (this.expired) {
      this.expired = false;
      this.context.hub.resume(this);
    }
    if (!first) this.reauthorizeClaimed(principal, token);
  }

  /** The current token's expiry came (context.expiries calls this, not before it). */
  onTokenExpired(): void {
    if (this.closed) return;
    // Delivery stops now; the grace period only delays the close, for a fresh token to arrive.
    this.expired = true;
    this.context.hub.hold(this);
    this.sendError('token_expired', 'the access token expired: send a fresh one with {"type":"auth"}', {});
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.expired) this.disconnect('token_expired');
    }, this.context.limits.tokenExpiryGraceMs);
  }

  private endConnectSpan(result: string): void {
    const span = this.connectSpan;
    if (span === undefined) return;
    this.connectSpan = undefined;
    span.setAttribute('pitwall.result', result);
    if (result !== 'authenticated') span.setStatus({ code: SpanStatusCode.ERROR, message: result });
    span.end();
  }

  // Subscriptions

  private subscribe(eventId: number, uid: Uid | undefined, request: JoinRequest): void {
    const { limits, rates } = this.context;
    if (this.expired) {
      this.refuseSubscribe('token_expired', 'expired', 'the access token expired: send a fresh one first', eventId, uid);
      return;
    }
    const now = Date.now();
    const bucket = rates.subscribe.take(this.subscribeFullAtMs, now);
    if (bucket === undefined) {
      this.refuseSubscribe(
        'rate_limited',
        'rate_limited',
        'too many subscribe requests; slow down',
        eventId,
        uid,
        rates.subscribe.waitMs(this.subscribeFullAtMs, now),
      );
      return;
    }
    this.subscribeFullAtMs = bucket;
    if (!this.context.hub.isJoined(this, eventId) && this.subscriptionCount + this.pendingCount >= limits.maxSubscriptions) {
      this.refuseSubscribe('bad_request', 'limit', `at most ${limits.maxSubscriptions} subscriptions per connection`, eventId, uid);
      return;
    }
    const pending: PendingSubscribe = { cancelled: false };
    this.pending ??= new Map();
    this.pending.set(eventId, pending);
    this.pendingCount++;
    void this.completeSubscribe(eventId, uid, pending, request).finally(() => {
      this.pendingCount--;
      if (this.pending?.get(eventId) === pending) this.pending.delete(eventId);
      // An idle connection keeps no empty map.
      if (this.pending?.size === 0) this.pending = undefined;
    });
  }

  private async completeSubscribe(eventId: number, uid: Uid | undefined, pending: PendingSubscribe, request: JoinRequest): Promise<void> {
    const { authorizer, directory, hub, metrics, logger, tracer } = this.context;
    const principal = this.principal;
    const token = this.token;
    if (principal === undefined || token === undefined) return;
    logger.debug({ connection: this.id, eventId, user: principal.userId }, 'subscribe requested');
    const span = tracer.startSpan('live.subscribe', { attributes: { 'pitwall.event_id': eventId, 'enduser.id': principal.userId } });
    try {
      const decision = await authorizer.authorize({ principal, token, eventId, fresh: false, interest: this });
      span.setAttribute('pitwall.authorization', decision.result);
      if (this.closed) return;
      switch (decision.result) {
        case 'forbidden':
          this.refuseSubscribe('forbidden', 'forbidden', `no permission to see event ${eventId}`, eventId, uid);
          return;
        case 'not_found':
          this.refuseSubscribe('not_found', 'not_found', `event ${eventId} does not exist`, eventId, uid);
          return;
        case 'unavailable':
          this.refuseSubscribe(
            'authorization_unavailable',
            'authorization_unavailable',
            'Directus cannot authorize this now; retry later',
            eventId,
            uid,
            decision.retryAfterMs,
          );
          return;
        case 'allowed':
          break;
      }
      const entries = await directory.load(eventId);
      // A cursor from a pod a little ahead: this pod reads the same streams and catches up (no I/O).
      if (request.since !== undefined) await hub.whenCaughtUp(request.since);
      if (this.closed) return;
      if (pending.cancelled) {
        // Unsubscribed while this was being authorized: the later request wins.
        this.send(unsubscribedMessage(eventId, 'client', uid));
        return;
      }
      if (this.expired) {
        this.refuseSubscribe('token_expired', 'expired', 'the access token expired: send a fresh one first', eventId, uid);
        return;
      }
      const again = hub.isJoined(this, eventId);
      hub.join(this, eventId, entries, uid, request);
      // Subscribed again: a periodic schedule already running is kept unless the claim now covers it.
      if (!again || this.rechecks?.has(eventId) !== true || decision.fromToken === true)
        this.setRecheck(eventId, this.checkAfter(decision, principal));
      metrics.subscribeRequests.inc({ result: 'ok' });
      logger.debug({ connection: this.id, eventId, devices: entries.devices.length }, 'subscribed');
      span.setAttribute('pitwall.devices', entries.devices.length);
    } catch (err) {
      if (err instanceof DirectusUnavailableError) {
        this.refuseSubscribe(
          'authorization_unavailable',
          'authorization_unavailable',
          'cannot read the event entries now; retry later',
          eventId,
          uid,
          err.retryAfterMs,
        );
      } else {
        logger.error({ err, eventId }, 'subscribe failed');
        this.refuseSubscribe('internal', 'internal', 'internal error', eventId, uid);
      }
      span.setStatus({ code: SpanStatusCode.ERROR });
    } finally {
      span.end();
    }
  }

  private unsubscribe(eventId: number, uid: Uid | undefined): void {
    const pending = this.pending?.get(eventId);
    if (pending !== undefined) pending.cancelled = true;
    this.endSubscription(eventId, 'client', uid);
  }

  /** Leaves an event (if subscribed) and tells the client. */
  private endSubscription(eventId: number, reason: 'client' | 'forbidden', uid: Uid | undefined): void {
    if (this.context.hub.leave(this, eventId)) {
      this.setRecheck(eventId, undefined);
      this.context.metrics.unsubscribes.inc({ reason });
    }
    this.send(unsubscribedMessage(eventId, reason, uid));
  }

  private refuseSubscribe(
    code: ErrorCode,
    result: string,
    message: string,
    eventId: number,
    uid: Uid | undefined,
    retryAfterMs?: number,
  ): void {
    this.context.metrics.subscribeRequests.inc({ result });
    this.context.logger.debug({ connection: this.id, eventId, result }, 'subscribe refused');
    this.sendError(code, message, { uid, eventId, retryAfterMs });
  }

  /**
   * When a subscription just authorized is next re-validated: never when the current token's claim
   * authorized it; at once (next sweep) when the claim of a token replaced meanwhile did; else periodically.
   */
  private checkAfter(decision: AuthorizationDecision, principal: Principal): number {
    if (decision.fromToken !== true) return this.nextCheckAt();
    return principal === this.principal ? BY_TOKEN : Date.now();
  }

  /** Sets when a live subscription is re-validated next (BY_TOKEN: never; undefined: it ended). */
  private setRecheck(eventId: number, atMs: number | undefined): void {
    if (atMs !== undefined && atMs !== BY_TOKEN) {
      (this.rechecks ??= new Map()).set(eventId, atMs);
      return;
    }
    this.rechecks?.delete(eventId);
    // A connection with claim-authorized subscriptions only (the common case) keeps no map.
    if (this.rechecks?.size === 0) this.rechecks = undefined;
  }

  private nextCheckAt(): number {
    // Jitter spreads re-validations of subscriptions made together (race start) over time.
    return Date.now() + this.context.limits.revalidateIntervalMs * (0.9 + Math.random() * 0.2);
  }

  // Replies and limits

  private protocolError(reason: string, uid: Uid | undefined): void {
    this.context.metrics.messagesRejected.inc({ reason: 'bad_request' });
    this.protocolErrors++;
    this.sendError('bad_request', reason, { uid });
    if (this.protocolErrors >= this.context.limits.maxProtocolErrors) this.disconnect('protocol');
  }

  private sendError(code: ErrorCode, message: string, details: ErrorDetails): void {
    this.send(errorMessage(code, message, details));
  }

  private send(text: string): void {
    if (this.closed || this.socket === undefined) return;
    this.socket.send(text);
    this.context.metrics.framesSent.inc({ kind: 'control' });
  }
}
