import {
  actionForCloseCode,
  Backoff,
  DEFAULT_BACKOFF,
  ERRORS,
  parseServerMessage,
  UNSUBSCRIBE_REASONS,
  type BackoffPolicy,
  type ClientMessage,
  type Cursor,
  type ErrorCode,
  type ErrorMessage,
  type PositionsMessage,
  type ServerMessage,
  type SubscribedMessage,
  type SubscribeRequest,
  type UnsubscribeReason,
  type WirePosition,
} from '@pitwall/live-protocol';
import { Emitter, type Listener } from './emitter.js';
import { globalSocketFactory, SOCKET_OPEN, systemClock, type Clock, type SocketFactory, type SocketLike } from './runtime.js';

/**
 * - `idle`: not started, or closed by close();
 * - `connecting`: the socket is opening; `authenticating`: open, the token is being verified;
 * - `open`: authenticated, subscriptions live;
 * - `waiting`: between a lost connection and the next attempt;
 * - `stopped`: given up (the token cannot be refreshed, or the gateway said this client is broken).
 */
export type ConnectionState = 'idle' | 'connecting' | 'authenticating' | 'open' | 'waiting' | 'stopped';

export interface LiveClientOptions {
  /**
   * The gateway's `/live` address (wss://…/live). Several: the client moves to the next one when a
   * gateway goes away (1001) or cannot be reached; behind a load balancer one address is enough.
   */
  url: string | readonly string[];
  /** The current access token (Directus's). Called when a connection authenticates. */
  token: () => string | Promise<string>;
  /**
   * A fresh access token (Directus POST /auth/refresh): called before the token expires, when the gateway
   * says it expired, and after a 4401. Throwing means the user must log in again (the client stops).
   * Default: `token()` again.
   */
  refreshToken?: () => Promise<string>;
  /** Opens a WebSocket. Default: the runtime's WebSocket (browsers, Node >= 22); on Node 20 pass one from `ws`. */
  socket?: SocketFactory;
  clock?: Clock;
  random?: () => number;
  /** Reconnects and retries of refused subscribes (the protocol's backoff; `retry_after_ms` is honoured). */
  backoff?: BackoffPolicy;
  /** The token is refreshed this long before it expires (default 60 s). */
  refreshBeforeExpiryMs?: number;
  /**
   * After 1001 (the gateway is going away) the client reconnects at once to another gateway, within a
   * random delay of up to this (default 1000 ms), so that a drained pod's viewers do not all arrive in
   * the same millisecond.
   */
  elsewhereJitterMs?: number;
  /** A `ping` is sent this often; a connection silent for twice this is dropped and replaced (default 25 s; 0: never). */
  heartbeatMs?: number;
  /** Devices per event whose last position time is remembered (to drop repeats); beyond it the oldest is forgotten. */
  maxDevicesPerEvent?: number;
}

export interface SubscribeOptions {
  /**
   * Ask for the event's positions of this many last seconds (trails): on the first subscribe, and on a
   * resume the gateway could not recover (a recovered one needs none).
   */
  historySeconds?: number;
}

export interface SubscribedEvent {
  eventId: number;
  /** Only on a resume: true when every missed position follows; false when `snapshot` stands in for them. */
  recovered: boolean | undefined;
  /** The latest position of each device (empty on a recovered resume). */
  snapshot: WirePosition[];
  /** The trail asked with historySeconds, oldest first (empty when not asked). */
  history: WirePosition[];
}

export interface PositionsEvent {
  eventId: number;
  /** New positions, in the gateway's order; a position not newer than the last one of its device is dropped. */
  positions: WirePosition[];
  cursor: Cursor;
}

export interface ClientError {
  /** A protocol error code, or what went wrong on this side. */
  code: ErrorCode | 'refresh_failed' | 'closed';
  message: string;
  eventId?: number | undefined;
  retryAfterMs?: number | undefined;
  /** The client gave up on this subscription (with eventId) or on everything (without). */
  fatal: boolean;
}

export interface LiveClientEvents {
  state: ConnectionState;
  subscribed: SubscribedEvent;
  positions: PositionsEvent;
  unsubscribed: { eventId: number; reason: UnsubscribeReason };
  error: ClientError;
  reconnecting: { delayMs: number; attempt: number; closeCode: number };
}

export interface LiveClientStats {
  /** Connections that authenticated. */
  connections: number;
  /** Resumes answered `recovered: true` / `false`. */
  recovered: number;
  notRecovered: number;
  /** Positions dropped because their device already had a newer (or the same) one. */
  duplicatesDropped: number;
}

interface Subscription {
  readonly eventId: number;
  readonly historySeconds: number | undefined;
  cursor: Cursor | undefined;
  /** `pending`: sent, no reply yet; `live`: subscribed; `waiting`: a retry is scheduled; `idle`: to send when open. */
  state: 'idle' | 'pending' | 'live' | 'waiting';
  readonly retry: Backoff;
  retryTimer: unknown;
  /** Device id -> device time of its last position (bounded; oldest forgotten first). */
  readonly lastTs: Map<string, number>;
}

const AUTH_UID = 'auth';

/**
 * A viewer's connection to the live gateway: authenticates with an access token and keeps it fresh,
 * keeps its subscriptions across reconnects, resumes each from the cursor of the last frame it handled
 * (no gap, no repeat, when the gateway still holds what was missed), reconnects with the protocol's
 * jittered backoff (honouring `retry_after_ms`), moves to another gateway on 1001. Memory is bounded:
 * nothing is queued while disconnected, per subscription only its cursor and the last position time
 * of each device.
 */
export class LiveClient {
  private readonly urls: readonly string[];
  private urlIndex = 0;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly openSocket: SocketFactory;
  private readonly connectBackoff: Backoff;
  private readonly emitter = new Emitter<LiveClientEvents>();
  private readonly subscriptions = new Map<number, Subscription>();
  private socket: SocketLike | undefined;
  private currentState: ConnectionState = 'idle';
  private authenticated = false;
  private everOpened = false;
  /** The spread the gateway asked for with `going_away`, for the reconnect after its 1001. */
  private goingAwayWithinMs: number | undefined = undefined;
  private reconnectTimer: unknown;
  private refreshTimer: unknown;
  private heartbeatTimer: unknown;
  private lastMessageAt = 0;
  /** The token last obtained (sent again on reconnects until refreshed). */
  private currentToken: string | undefined;
  private readonly counters: LiveClientStats = { connections: 0, recovered: 0, notRecovered: 0, duplicatesDropped: 0 };

  constructor(private readonly options: LiveClientOptions) {
    this.urls = typeof options.url === 'string' ? [options.url] : [...options.url];
    if (this.urls.length === 0) throw new Error('LiveClient needs at least one url');
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    const factory = options.socket ?? globalSocketFactory();
    if (factory === undefined) throw new Error('no WebSocket in this runtime: pass options.socket (for example from the ws package)');
    this.openSocket = factory;
    this.connectBackoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF, this.random);
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  stats(): LiveClientStats {
    return { ...this.counters };
  }

  /** The cursor of the last frame handled for an event (what a resume starts from). */
  cursorOf(eventId: number): Cursor | undefined {
    return this.subscriptions.get(eventId)?.cursor;
  }

  on<K extends keyof LiveClientEvents>(name: K, listener: Listener<LiveClientEvents[K]>): () => void {
    return this.emitter.on(name, listener);
  }

  /** Connects (and keeps reconnecting until close()). */
  start(): void {
    if (this.currentState !== 'idle' && this.currentState !== 'stopped') return;
    this.connect();
  }

  /** Closes the connection and stops reconnecting; subscriptions are kept for a later start(). */
  close(): void {
    this.clearTimers();
    const socket = this.detach();
    socket?.close(1000, 'client closed');
    for (const subscription of this.subscriptions.values()) this.resetSubscription(subscription);
    this.setState('idle');
  }

  /**
   * Gets a fresh token from refreshToken() now and sends it on the open connection (for an app that
   * refreshed its session itself). The client does this on its own before the token expires.
   */
  async refreshNow(): Promise<void> {
    await this.sendToken(true);
  }

  /** Subscribes to an event (now, or as soon as the connection is open). Idempotent. */
  subscribe(eventId: number, options: SubscribeOptions = {}): void {
    if (this.subscriptions.has(eventId)) return;
    const subscription: Subscription = {
      eventId,
      historySeconds: options.historySeconds,
      cursor: undefined,
      state: 'idle',
      retry: new Backoff(this.options.backoff ?? DEFAULT_BACKOFF, this.random),
      retryTimer: undefined,
      lastTs: new Map(),
    };
    this.subscriptions.set(eventId, subscription);
    if (this.currentState === 'open') this.sendSubscribe(subscription);
  }

  unsubscribe(eventId: number): void {
    const subscription = this.subscriptions.get(eventId);
    if (subscription === undefined) return;
    this.subscriptions.delete(eventId);
    this.clock.clearTimeout(subscription.retryTimer);
    if (this.currentState === 'open') this.send({ type: 'unsubscribe', event_id: eventId, uid: `u${eventId}` });
  }

  // Connection

  private connect(): void {
    this.reconnectTimer = undefined;
    const url = this.urls[this.urlIndex % this.urls.length] as string;
    this.setState('connecting');
    this.authenticated = false;
    this.everOpened = false;
    let socket: SocketLike;
    try {
      socket = this.openSocket(url);
    } catch {
      this.onClosed(1006);
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.everOpened = true;
      this.lastMessageAt = this.clock.now();
      this.setState('authenticating');
      void this.sendToken(false);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.lastMessageAt = this.clock.now();
      const message = parseServerMessage(typeof event.data === 'string' ? event.data : String(event.data));
      if (message !== undefined) this.onMessage(message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.detach();
      this.onClosed(event.code);
    };
    socket.onerror = () => undefined;
  }

  /** Stops listening to the current socket (its late events are ignored) and returns it. */
  private detach(): SocketLike | undefined {
    const socket = this.socket;
    this.socket = undefined;
    if (socket !== undefined) socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    this.clock.clearTimeout(this.heartbeatTimer);
    this.clock.clearTimeout(this.refreshTimer);
    this.heartbeatTimer = this.refreshTimer = undefined;
    return socket;
  }

  private onClosed(code: number): void {
    for (const subscription of this.subscriptions.values()) this.resetSubscription(subscription);
    const action = actionForCloseCode(code);
    if (action === 'stop') {
      this.setState('stopped');
      this.emitError({ code: 'closed', message: `the gateway closed the connection with ${code}: not retrying`, fatal: true });
      return;
    }
    if (action === 'reconnect_elsewhere') {
      this.urlIndex++;
      // The gateway's spread (`going_away`) when it sent one: it knows how many viewers it drains.
      const within = this.goingAwayWithinMs ?? this.options.elsewhereJitterMs ?? 1_000;
      this.goingAwayWithinMs = undefined;
      this.scheduleReconnect(Math.round(this.random() * within), code);
      return;
    }
    // A gateway that cannot be reached at all: try the next one.
    if (!this.everOpened) this.urlIndex++;
    if (action === 'refresh_token') {
      this.setState('waiting');
      void this.refresh(true).then((ok) => {
        if (ok && this.currentState === 'waiting' && this.reconnectTimer === undefined) {
          this.scheduleReconnect(this.connectBackoff.next(), code);
        }
      });
      return;
    }
    this.scheduleReconnect(this.connectBackoff.next(), code);
  }

  private scheduleReconnect(delayMs: number, closeCode: number): void {
    this.setState('waiting');
    this.emitter.emit('reconnecting', { delayMs, attempt: this.connectBackoff.attempts, closeCode });
    this.reconnectTimer = this.clock.setTimeout(() => this.connect(), delayMs);
  }

  /** Drops a connection that went silent (no close event comes on a dead network) and replaces it. */
  private heartbeat(): void {
    const interval = this.options.heartbeatMs ?? 25_000;
    if (interval <= 0) return;
    this.heartbeatTimer = this.clock.setTimeout(() => {
      const socket = this.socket;
      if (socket === undefined) return;
      if (this.clock.now() - this.lastMessageAt > 2 * interval) {
        this.detach();
        socket.close(4000, 'heartbeat timeout');
        this.onClosed(1006);
        return;
      }
      this.send({ type: 'ping' });
      this.heartbeat();
    }, interval);
  }

  // Authentication

  /** Sends the token (a fresh one when `fresh`) on the current connection. */
  private async sendToken(fresh: boolean): Promise<void> {
    const socket = this.socket;
    if (fresh || this.currentToken === undefined) {
      if (!(await this.refresh(fresh))) return;
    }
    if (this.socket !== socket || socket === undefined || this.currentToken === undefined) return;
    this.send({ type: 'auth', access_token: this.currentToken, uid: AUTH_UID });
  }

  /** Gets a token (a fresh one when `fresh`); false (and stopped) when there is none. */
  private async refresh(fresh: boolean): Promise<boolean> {
    try {
      const source = fresh ? (this.options.refreshToken ?? this.options.token) : this.options.token;
      this.currentToken = await source();
      return true;
    } catch (err) {
      this.giveUp(err);
      return false;
    }
  }

  private giveUp(err: unknown): void {
    this.clearTimers();
    this.detach()?.close(1000, 'no token');
    this.setState('stopped');
    this.emitError({
      code: 'refresh_failed',
      message: `no access token: ${err instanceof Error ? err.message : String(err)}`,
      fatal: true,
    });
  }

  private scheduleRefresh(expiresAtMs: number): void {
    this.clock.clearTimeout(this.refreshTimer);
    const margin = this.options.refreshBeforeExpiryMs ?? 60_000;
    const delay = Math.max(1_000, expiresAtMs - margin - this.clock.now());
    this.refreshTimer = this.clock.setTimeout(() => {
      this.refreshTimer = undefined;
      void this.sendToken(true);
    }, delay);
  }

  private onAuthenticated(expiresAtMs: number): void {
    this.scheduleRefresh(expiresAtMs);
    if (this.authenticated) {
      // A refresh: subscriptions held while the token was expired go again.
      for (const subscription of this.subscriptions.values()) if (subscription.state === 'idle') this.sendSubscribe(subscription);
      return;
    }
    this.authenticated = true;
    this.counters.connections++;
    this.connectBackoff.reset();
    this.setState('open');
    this.heartbeat();
    for (const subscription of this.subscriptions.values()) this.sendSubscribe(subscription);
  }

  // Messages

  private onMessage(message: ServerMessage): void {
    switch (message.type) {
      case 'auth':
        this.onAuthenticated(message.expires_at);
        return;
      case 'subscribed':
        this.onSubscribed(message);
        return;
      case 'positions':
        this.onPositions(message);
        return;
      case 'unsubscribed': {
        if (message.reason === UNSUBSCRIBE_REASONS.forbidden) this.subscriptions.delete(message.event_id);
        this.emitter.emit('unsubscribed', { eventId: message.event_id, reason: message.reason });
        return;
      }
      case 'error':
        this.onError(message);
        return;
      case 'pong':
        return;
    }
  }

  private onSubscribed(message: SubscribedMessage): void {
    const subscription = this.subscriptions.get(message.event_id);
    if (subscription === undefined) return;
    subscription.state = 'live';
    subscription.retry.reset();
    if (message.recovered === true) this.counters.recovered++;
    else if (message.recovered === false) this.counters.notRecovered++;
    if (message.cursor !== undefined) subscription.cursor = message.cursor;
    const history = message.history ?? [];
    for (const position of history) this.remember(subscription, position);
    for (const position of message.snapshot) this.remember(subscription, position);
    this.emitter.emit('subscribed', { eventId: message.event_id, recovered: message.recovered, snapshot: message.snapshot, history });
  }

  private onPositions(message: PositionsMessage): void {
    const subscription = this.subscriptions.get(message.event_id);
    if (subscription === undefined) return;
    const fresh: WirePosition[] = [];
    for (const position of message.positions) {
      const last = subscription.lastTs.get(position.device_id);
      if (last !== undefined && position.ts <= last) {
        this.counters.duplicatesDropped++;
        continue;
      }
      this.remember(subscription, position);
      fresh.push(position);
    }
    subscription.cursor = message.cursor;
    if (fresh.length > 0) this.emitter.emit('positions', { eventId: message.event_id, positions: fresh, cursor: message.cursor });
  }

  private onError(message: ErrorMessage): void {
    const { code } = message;
    if (code === 'going_away') {
      // The 1001 close follows; remember how widely to spread the reconnect (bounded: a minute).
      const within = message.reconnect_within_ms;
      if (typeof within === 'number' && Number.isFinite(within)) this.goingAwayWithinMs = Math.min(60_000, Math.max(0, within));
      return;
    }
    const subscription = message.event_id === undefined ? undefined : this.subscriptions.get(message.event_id);
    const base = { code, message: message.message, eventId: message.event_id, retryAfterMs: message.retry_after_ms };
    if (subscription !== undefined && subscription.state === 'pending') {
      if (ERRORS[code].retryable) {
        subscription.state = 'waiting';
        const delay = subscription.retry.next(message.retry_after_ms);
        subscription.retryTimer = this.clock.setTimeout(() => {
          if (this.subscriptions.get(subscription.eventId) !== subscription) return;
          if (this.currentState === 'open') this.sendSubscribe(subscription);
          else subscription.state = 'idle';
        }, delay);
        this.emitError({ ...base, fatal: false });
      } else if (code === 'token_expired') {
        // Sent again once a fresh token is accepted.
        subscription.state = 'idle';
        void this.sendToken(true);
      } else {
        this.subscriptions.delete(subscription.eventId);
        this.emitError({ ...base, fatal: true });
      }
      return;
    }
    if (code === 'token_expired') {
      void this.sendToken(true);
    } else if (ERRORS[code].retryable && message.uid === AUTH_UID) {
      // The token could not be checked now: send it again later (the gateway's auth timeout may close first; then we reconnect).
      const delay = this.connectBackoff.next(message.retry_after_ms);
      const socket = this.socket;
      this.clock.setTimeout(() => {
        if (this.socket === socket) void this.sendToken(false);
      }, delay);
    }
    this.emitError({ ...base, fatal: false });
  }

  private sendSubscribe(subscription: Subscription): void {
    const request: SubscribeRequest = { type: 'subscribe', event_id: subscription.eventId, uid: `s${subscription.eventId}` };
    if (subscription.cursor !== undefined) request.since = subscription.cursor;
    // The gateway sends the trail only when it cannot recover: then it stands in for the gap.
    if (subscription.historySeconds !== undefined) request.history_seconds = subscription.historySeconds;
    subscription.state = 'pending';
    this.send(request);
  }

  private remember(subscription: Subscription, position: WirePosition): void {
    const { lastTs } = subscription;
    const last = lastTs.get(position.device_id);
    if (last !== undefined) {
      if (position.ts <= last) return;
      lastTs.delete(position.device_id);
    } else if (lastTs.size >= (this.options.maxDevicesPerEvent ?? 10_000)) {
      const oldest = lastTs.keys().next();
      if (oldest.done !== true) lastTs.delete(oldest.value);
    }
    lastTs.set(position.device_id, position.ts);
  }

  private resetSubscription(subscription: Subscription): void {
    this.clock.clearTimeout(subscription.retryTimer);
    subscription.retryTimer = undefined;
    subscription.state = 'idle';
  }

  private send(message: ClientMessage): void {
    const socket = this.socket;
    if (socket === undefined || socket.readyState !== SOCKET_OPEN) return;
    socket.send(JSON.stringify(message));
  }

  private clearTimers(): void {
    this.clock.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    for (const subscription of this.subscriptions.values()) this.clock.clearTimeout(subscription.retryTimer);
  }

  private setState(state: ConnectionState): void {
    if (this.currentState === state) return;
    this.currentState = state;
    this.emitter.emit('state', state);
  }

  private emitError(error: ClientError): void {
    this.emitter.emit('error', error);
  }
}
