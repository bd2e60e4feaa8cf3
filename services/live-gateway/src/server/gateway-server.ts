import { SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import uWS, {
  type HttpRequest,
  type HttpResponse,
  type TemplatedApp,
  type us_listen_socket,
  type us_socket_context_t,
} from 'uWebSockets.js';
import { AuthenticationError } from '../auth/authentication-error.js';
import type { Principal, TokenVerifier } from '../auth/token-verifier.js';
import type { EventAuthorizer } from '../authz/event-authorizer.js';
import { Connection, type CloseReason, type ConnectionData } from '../connection.js';
import { DirectusUnavailableError } from '../directus/directus-unavailable-error.js';
import type { EventDirectory } from '../events/event-directory.js';
import type { LiveHub } from '../fanout/live-hub.js';
import type { GatewayMetrics } from '../metrics.js';
import { parseClientMessage, type ClientMessage, type Uid } from '../protocol/client-message.js';
import { authOkMessage, errorMessage, pongMessage, unsubscribedMessage, type ErrorCode } from '../protocol/server-message.js';

/** Close codes of the contract. */
export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_PROTOCOL = 4400;
export const CLOSE_AUTH_TIMEOUT = 4408;
export const CLOSE_GOING_AWAY = 1001;

/** Longest delay setTimeout takes; a later token expiry re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Hard cap of a frame uWS accepts at all (it drops the connection beyond); ours is checked below it. */
const UWS_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Messages kept while the query token of a new connection is verified; more is a protocol error. */
const MAX_HELD_MESSAGES = 16;
/** Time given to close frames to leave before the process moves on to closing Redis. */
const CLOSE_FLUSH_MS = 200;

export interface GatewayServerOptions {
  port: number;
  host: string;
  maxMessageBytes: number;
  maxSubscriptionsPerConnection: number;
  subscribeRatePerSecond: number;
  maxConnections: number;
  maxProtocolErrors: number;
  idleTimeoutSeconds: number;
  authTimeoutMs: number;
  tokenExpiryGraceMs: number;
  maxBackpressureBytes: number;
  revalidateIntervalMs: number;
  entriesRefreshIntervalMs: number;
  slowClientCheckMs: number;
}

export interface GatewayServerDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  authorizer: EventAuthorizer;
  directory: EventDirectory;
  hub: LiveHub;
  metrics: GatewayMetrics;
  logger: Logger;
  tracer: Tracer;
}

type AuthOutcome =
  { ok: true; principal: Principal } | { ok: false; code: 'unauthenticated' | 'token_expired' | 'unavailable'; reason: string };

/**
 * The WebSocket edge on GATEWAY_PORT, path /live: authentication (first `auth` message or the
 * `access_token` query parameter, verified before the upgrade completes), token refresh and
 * expiry, subscribe/unsubscribe with authorization by Directus, protocol limits, periodic
 * re-validation, and the drain on shutdown (1001).
 */
export class GatewayServer implements Service {
  readonly name = 'websocket-server';
  private readonly connections = new Set<Connection>();
  private listenSocket: us_listen_socket | undefined;
  private boundPort = 0;
  private nextId = 1;
  private draining = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly subscribeBurst: number;

  constructor(
    private readonly options: GatewayServerOptions,
    private readonly deps: GatewayServerDeps,
  ) {
    this.subscribeBurst = options.subscribeRatePerSecond * 2;
    this.route(deps.app);
  }

  get port(): number {
    return this.boundPort;
  }

  get listening(): boolean {
    return this.listenSocket !== undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.deps.app.listen(this.options.host, this.options.port, (socket) => {
        if (socket === false) {
          reject(new Error(`cannot listen on ${this.options.host}:${this.options.port} (GATEWAY_PORT in use?)`));
          return;
        }
        this.listenSocket = socket;
        this.boundPort = uWS.us_socket_local_port(socket);
        resolve();
      });
    });
    const every = (ms: number, task: () => void) => {
      const timer = setInterval(task, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(this.options.slowClientCheckMs, () => this.deps.hub.checkSlowClients());
    every(Math.min(1_000, Math.max(50, this.options.revalidateIntervalMs / 4)), () => this.revalidateDue());
    every(this.options.entriesRefreshIntervalMs, () => void this.deps.directory.refresh());
    this.deps.logger.info({ port: this.boundPort, path: '/live' }, 'live gateway listening');
  }

  /** Stops accepting connections (first step of the drain); open ones keep being served. */
  stopAccepting(): void {
    this.draining = true;
    if (this.listenSocket !== undefined) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
  }

  close = idempotent(async () => {
    this.stopAccepting();
    for (const timer of this.timers) clearInterval(timer);
    this.deps.hub.flushAll();
    const open = [...this.connections];
    for (const conn of open) this.end(conn, CLOSE_GOING_AWAY, 'server going away', 'shutdown');
    if (open.length > 0) await new Promise((resolve) => setTimeout(resolve, CLOSE_FLUSH_MS));
    this.deps.logger.info({ closed: open.length }, 'closed every connection with 1001');
  });

  private route(app: TemplatedApp): void {
    app.ws<ConnectionData>('/live', {
      maxPayloadLength: Math.max(UWS_MAX_PAYLOAD_BYTES, this.options.maxMessageBytes * 2),
      maxBackpressure: this.options.maxBackpressureBytes,
      closeOnBackpressureLimit: 0,
      idleTimeout: this.options.idleTimeoutSeconds,
      sendPingsAutomatically: true,
      compression: uWS.DISABLED,
      upgrade: (res, req, context) => this.onUpgrade(res, req, context),
      open: (ws) => this.onOpen(ws.getUserData().connection, ws),
      message: (ws, message, isBinary) => this.onMessage(ws.getUserData().connection, message, isBinary),
      drain: (ws) => this.deps.hub.onDrain(ws.getUserData().connection),
      close: (ws, code) => this.onClose(ws.getUserData().connection, code),
    });
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').end('not found: the live gateway serves WebSocket /live\n');
    });
  }

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    if (this.draining) {
      this.deps.metrics.connectionsOpened.inc({ result: 'rejected_draining' });
      res.writeStatus('503 Service Unavailable').end('draining\n', true);
      return;
    }
    if (this.connections.size >= this.options.maxConnections) {
      this.deps.metrics.connectionsOpened.inc({ result: 'rejected_full' });
      res.writeStatus('503 Service Unavailable').end('too many connections\n', true);
      return;
    }
    const conn = new Connection(this.nextId++, this.subscribeBurst, Date.now());
    conn.queryToken = req.getQuery('access_token') || undefined;
    // Ends once the connection is authenticated, refused or gone.
    conn.connectSpan = this.deps.tracer.startSpan('live.connect', {
      attributes: { 'pitwall.connection': conn.id, 'pitwall.token_in_query': conn.queryToken !== undefined },
    });
    this.deps.metrics.connectionsOpened.inc({ result: 'accepted' });
    // Upgraded at once, inside this handler. Verifying the query token first and upgrading from its
    // callback (uWS's async upgrade) dropped connections now and then with this uWS build (1006 right
    // after open), so the token is verified as soon as the socket is open; the client sees the same
    // protocol either way (auth ok, or error and 4401), and nothing is served before it is verified.
    res.upgrade<ConnectionData>(
      { connection: conn },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  }

  private onOpen(conn: Connection, ws: Connection['ws']): void {
    this.deps.logger.debug({ connection: conn.id, tokenInQuery: conn.queryToken !== undefined }, 'connection opened');
    conn.ws = ws;
    this.connections.add(conn);
    this.deps.metrics.connections.set(this.connections.size);
    if (this.draining) {
      this.end(conn, CLOSE_GOING_AWAY, 'server going away', 'shutdown');
      return;
    }
    conn.authTimer = setTimeout(() => {
      if (conn.authenticated || conn.closed) return;
      this.send(conn, errorMessage('unauthenticated', `no access token within ${this.options.authTimeoutMs} ms`));
      this.end(conn, CLOSE_AUTH_TIMEOUT, 'authentication timeout', 'auth_timeout');
    }, this.options.authTimeoutMs);
    const token = conn.queryToken;
    conn.queryToken = undefined;
    if (token === undefined) return;
    conn.held = [];
    void this.onAuthMessage(conn, token, undefined).then(() => {
      const held = conn.held ?? [];
      conn.held = undefined;
      for (const request of held) if (!conn.closed) this.handle(conn, request);
    });
  }

  private onClose(conn: Connection, code: number): void {
    this.deps.logger.debug({ connection: conn.id, code, reason: conn.closeReason ?? 'client' }, 'connection closed');
    this.endConnectSpan(conn, conn.closeReason ?? 'closed');
    conn.closed = true;
    conn.clearTimers();
    this.deps.hub.removeConnection(conn);
    conn.ws = undefined;
    if (this.connections.delete(conn)) {
      this.deps.metrics.connections.set(this.connections.size);
      this.deps.metrics.connectionsClosed.inc({ reason: conn.closeReason ?? 'client' });
    }
  }

  private onMessage(conn: Connection, message: ArrayBuffer, isBinary: boolean): void {
    if (isBinary) {
      this.rejectFatally(conn, 'binary', 'binary frames are not part of the protocol; send JSON text');
      return;
    }
    if (message.byteLength > this.options.maxMessageBytes) {
      this.rejectFatally(conn, 'oversized', `message of ${message.byteLength} bytes exceeds the limit of ${this.options.maxMessageBytes}`);
      return;
    }
    // Decoded now: uWS neuters the buffer when this handler returns.
    const parsed = parseClientMessage(Buffer.from(message).toString('utf8'));
    if (!parsed.ok) {
      this.protocolError(conn, parsed.reason, parsed.uid);
      return;
    }
    const request = parsed.message;
    if (conn.held !== undefined && request.type !== 'ping') {
      // The query token is still being verified: keep the order the client sent things in.
      if (conn.held.length >= MAX_HELD_MESSAGES) this.protocolError(conn, 'too many messages before authentication completed', request.uid);
      else conn.held.push(request);
      return;
    }
    this.handle(conn, request);
  }

  private handle(conn: Connection, request: ClientMessage): void {
    switch (request.type) {
      case 'ping':
        this.send(conn, pongMessage(request.uid));
        return;
      case 'auth':
        void this.onAuthMessage(conn, request.accessToken, request.uid);
        return;
      case 'subscribe':
      case 'unsubscribe':
        if (!conn.authenticated) {
          this.deps.metrics.messagesRejected.inc({ reason: 'unauthenticated' });
          this.send(conn, errorMessage('unauthenticated', 'send {"type":"auth","access_token":...} first', request.uid));
          return;
        }
        if (request.type === 'subscribe') void this.onSubscribe(conn, request.eventId, request.uid);
        else this.onUnsubscribe(conn, request.eventId, request.uid);
        return;
    }
  }

  private async onAuthMessage(conn: Connection, token: string, uid: Uid | undefined): Promise<void> {
    const outcome = await this.authenticate(token);
    if (!conn.closed) this.applyAuth(conn, token, outcome, uid);
  }

  /** Verifies a token; never throws. */
  private async authenticate(token: string): Promise<AuthOutcome> {
    return this.deps.tracer.startActiveSpan('live.auth', async (span: Span) => {
      let outcome: AuthOutcome;
      try {
        outcome = { ok: true, principal: await this.deps.verifier.verify(token) };
        span.setAttribute('enduser.id', outcome.principal.userId);
      } catch (err) {
        if (err instanceof AuthenticationError) {
          outcome = { ok: false, code: err.expired ? 'token_expired' : 'unauthenticated', reason: err.message };
        } else if (err instanceof DirectusUnavailableError) {
          outcome = { ok: false, code: 'unavailable', reason: err.message };
        } else {
          this.deps.logger.error({ err }, 'token verification failed unexpectedly');
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
      this.deps.metrics.authentications.inc({ result });
      span.setAttribute('pitwall.result', result);
      span.end();
      return outcome;
    });
  }

  private endConnectSpan(conn: Connection, result: string): void {
    const span = conn.connectSpan;
    if (span === undefined) return;
    conn.connectSpan = undefined;
    span.setAttribute('pitwall.result', result);
    if (result !== 'authenticated') span.setStatus({ code: SpanStatusCode.ERROR, message: result });
    span.end();
  }

  private applyAuth(conn: Connection, token: string, outcome: AuthOutcome, uid: Uid | undefined): void {
    if (conn.closed) return;
    if (!outcome.ok) {
      if (outcome.code === 'unavailable') {
        // Not the client's fault: it may retry; the auth timeout still runs for a new connection.
        this.send(conn, errorMessage('authorization_unavailable', `cannot verify the token now: ${outcome.reason}`, uid));
        return;
      }
      this.send(conn, errorMessage(outcome.code, outcome.reason, uid));
      this.end(conn, CLOSE_UNAUTHENTICATED, outcome.code === 'token_expired' ? 'token expired' : 'unauthenticated', 'unauthenticated');
      return;
    }
    const { principal } = outcome;
    if (conn.principal !== undefined && conn.principal.userId !== principal.userId) {
      this.send(conn, errorMessage('unauthenticated', 'a refreshed token must belong to the same user', uid));
      this.end(conn, CLOSE_UNAUTHENTICATED, 'user changed', 'unauthenticated');
      return;
    }
    conn.principal = principal;
    conn.token = token;
    conn.expired = false;
    this.endConnectSpan(conn, 'authenticated');
    conn.clearTimers();
    this.armExpiry(conn);
    this.send(conn, authOkMessage(principal.expiresAtMs, uid));
  }

  private armExpiry(conn: Connection): void {
    const expiresAtMs = conn.principal?.expiresAtMs;
    if (expiresAtMs === undefined) return;
    const delay = expiresAtMs - Date.now();
    conn.expiryTimer = setTimeout(
      () => {
        if (conn.closed) return;
        if (Date.now() < expiresAtMs) {
          this.armExpiry(conn);
          return;
        }
        conn.expired = true;
        this.send(conn, errorMessage('token_expired', 'the access token expired: send a fresh one with {"type":"auth"}'));
        conn.graceTimer = setTimeout(() => {
          if (conn.expired) this.end(conn, CLOSE_UNAUTHENTICATED, 'token expired', 'token_expired');
        }, this.options.tokenExpiryGraceMs);
      },
      Math.min(Math.max(delay, 0), MAX_TIMER_MS),
    );
  }

  private async onSubscribe(conn: Connection, eventId: number, uid: Uid | undefined): Promise<void> {
    const principal = conn.principal;
    const token = conn.token;
    if (principal === undefined || token === undefined) return;
    if (conn.expired) {
      this.refuseSubscribe(conn, 'token_expired', 'expired', 'the access token expired: send a fresh one first', eventId, uid);
      return;
    }
    if (!this.takeSubscribeToken(conn)) {
      this.refuseSubscribe(conn, 'rate_limited', 'rate_limited', 'too many subscribe requests; slow down', eventId, uid);
      return;
    }
    if (
      !conn.subscriptions.has(eventId) &&
      conn.subscriptions.size + conn.pendingSubscribes >= this.options.maxSubscriptionsPerConnection
    ) {
      this.refuseSubscribe(
        conn,
        'bad_request',
        'limit',
        `at most ${this.options.maxSubscriptionsPerConnection} subscriptions per connection`,
        eventId,
        uid,
      );
      return;
    }
    const epoch = conn.cancelEpoch?.get(eventId) ?? 0;
    this.deps.logger.debug({ connection: conn.id, eventId, user: principal.userId }, 'subscribe requested');
    conn.pendingSubscribes++;
    const span = this.deps.tracer.startSpan('live.subscribe', {
      attributes: { 'pitwall.event_id': eventId, 'enduser.id': principal.userId },
    });
    try {
      const result = await this.deps.authorizer.check(principal.userId, token, eventId);
      span.setAttribute('pitwall.authorization', result);
      if (conn.closed) return;
      if (result === 'forbidden') {
        this.refuseSubscribe(conn, 'forbidden', 'forbidden', `no permission to see event ${eventId}`, eventId, uid);
        return;
      }
      if (result === 'not_found') {
        this.refuseSubscribe(conn, 'not_found', 'not_found', `event ${eventId} does not exist`, eventId, uid);
        return;
      }
      if (result === 'unavailable') {
        this.refuseSubscribe(
          conn,
          'authorization_unavailable',
          'authorization_unavailable',
          'Directus cannot authorize this now; retry later',
          eventId,
          uid,
        );
        return;
      }
      const devices = await this.deps.directory.load(eventId);
      if (conn.closed) return;
      if ((conn.cancelEpoch?.get(eventId) ?? 0) !== epoch) {
        // Unsubscribed while this was being authorized: the later request wins.
        this.send(conn, unsubscribedMessage(eventId, 'client', uid));
        return;
      }
      this.deps.hub.subscribe(conn, eventId, devices, uid);
      this.deps.metrics.subscribeRequests.inc({ result: 'ok' });
      this.deps.logger.debug({ connection: conn.id, eventId, devices: devices.length }, 'subscribed');
      span.setAttribute('pitwall.devices', devices.length);
    } catch (err) {
      if (err instanceof DirectusUnavailableError) {
        this.refuseSubscribe(
          conn,
          'authorization_unavailable',
          'authorization_unavailable',
          'cannot read the event entries now; retry later',
          eventId,
          uid,
        );
      } else {
        this.deps.logger.error({ err, eventId }, 'subscribe failed');
        this.refuseSubscribe(conn, 'internal', 'internal', 'internal error', eventId, uid);
      }
      span.setStatus({ code: SpanStatusCode.ERROR });
    } finally {
      conn.pendingSubscribes--;
      span.end();
    }
  }

  private refuseSubscribe(conn: Connection, code: ErrorCode, result: string, message: string, eventId: number, uid: Uid | undefined): void {
    this.deps.metrics.subscribeRequests.inc({ result });
    this.deps.logger.debug({ connection: conn.id, eventId, result }, 'subscribe refused');
    this.send(conn, errorMessage(code, message, uid, eventId));
  }

  private onUnsubscribe(conn: Connection, eventId: number, uid: Uid | undefined): void {
    conn.cancelEpoch ??= new Map();
    conn.cancelEpoch.set(eventId, (conn.cancelEpoch.get(eventId) ?? 0) + 1);
    this.deps.hub.unsubscribe(conn, eventId, 'client', uid);
  }

  /** Token bucket: `rate` per second, burst twice that. */
  private takeSubscribeToken(conn: Connection): boolean {
    const now = Date.now();
    const rate = this.options.subscribeRatePerSecond;
    conn.subscribeTokens = Math.min(this.subscribeBurst, conn.subscribeTokens + ((now - conn.subscribeRefillAtMs) / 1000) * rate);
    conn.subscribeRefillAtMs = now;
    if (conn.subscribeTokens < 1) return false;
    conn.subscribeTokens -= 1;
    return true;
  }

  /** Re-authorizes the subscriptions that are due; a revoked one ends with `forbidden`. */
  private revalidateDue(): void {
    for (const { conn, eventId } of this.deps.hub.dueForRevalidation(Date.now())) {
      const principal = conn.principal;
      const token = conn.token;
      if (principal === undefined || token === undefined || conn.expired) continue;
      void this.deps.authorizer.check(principal.userId, token, eventId, { fresh: true }).then((result) => {
        this.deps.metrics.revalidations.inc({ result });
        if ((result === 'forbidden' || result === 'not_found') && !conn.closed && conn.subscriptions.has(eventId)) {
          this.deps.logger.info({ connection: conn.id, eventId, result }, 'permission revoked; subscription ended');
          this.deps.hub.unsubscribe(conn, eventId, 'forbidden');
        }
      });
    }
  }

  private protocolError(conn: Connection, reason: string, uid: Uid | undefined): void {
    this.deps.metrics.messagesRejected.inc({ reason: 'bad_request' });
    conn.protocolErrors++;
    this.send(conn, errorMessage('bad_request', reason, uid));
    if (conn.protocolErrors >= this.options.maxProtocolErrors) {
      this.end(conn, CLOSE_PROTOCOL, 'too many protocol errors', 'protocol');
    }
  }

  private rejectFatally(conn: Connection, reason: 'binary' | 'oversized', message: string): void {
    this.deps.metrics.messagesRejected.inc({ reason });
    this.send(conn, errorMessage('bad_request', message));
    this.end(conn, CLOSE_PROTOCOL, reason === 'binary' ? 'binary frame' : 'message too big', 'protocol');
  }

  private send(conn: Connection, text: string): void {
    if (conn.closed || conn.ws === undefined) return;
    conn.ws.send(text, false);
    this.deps.metrics.framesSent.inc({ kind: 'control' });
  }

  private end(conn: Connection, code: number, reason: string, closeReason: CloseReason): void {
    if (conn.closed || conn.ws === undefined) return;
    conn.closeReason = closeReason;
    conn.ws.end(code, reason);
  }
}
