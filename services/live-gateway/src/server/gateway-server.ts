import { PROTOCOL_LIMITS, UPGRADE_REFUSALS, type UpgradeRefusalName } from '@pitwall/live-protocol';
import { idempotent, type Logger, type Service } from '@pitwall/platform';
import uWS, {
  type HttpRequest,
  type HttpResponse,
  type TemplatedApp,
  type us_listen_socket,
  type us_socket_context_t,
} from 'uWebSockets.js';
import type { EventDirectory } from '../events/event-directory.js';
import type { LiveHub } from '../fanout/live-hub.js';
import type { GatewayMetrics } from '../metrics.js';
import { ClientSession, sessionRates, type SessionContext } from '../session/client-session.js';
import { SharedDeadlines } from '../util/shared-deadlines.js';
import { Admission, clientAddress, type AdmissionOptions } from './admission.js';
import { UwsTransport } from './uws-transport.js';

/** Time given to close frames to leave before the process moves on to closing Redis. */
const CLOSE_FLUSH_MS = 200;

const STATUS_TEXT: Record<number, string> = { 403: '403 Forbidden', 429: '429 Too Many Requests', 503: '503 Service Unavailable' };

export interface GatewayServerOptions extends AdmissionOptions {
  port: number;
  host: string;
  idleTimeoutSeconds: number;
  maxBackpressureBytes: number;
  revalidateIntervalMs: number;
  entriesRefreshIntervalMs: number;
  slowClientCheckMs: number;
  /** Header with the client's address (lower case), set by a proxy in front; undefined: the TCP peer. */
  clientAddressHeader: string | undefined;
  /** On a drain, the viewers are asked to spread their reconnects so that about this many arrive per second. */
  drainReconnectsPerSecond: number;
}

/** The window a drained pod's viewers spread their reconnects over: at least a second, at most half a minute. */
export function drainSpreadMs(connections: number, reconnectsPerSecond: number): number {
  return Math.min(30_000, Math.max(1_000, Math.ceil((connections / reconnectsPerSecond) * 1000)));
}

export interface GatewayServerDeps {
  app: TemplatedApp;
  /** Shared by every session; the server adds onAuthenticated (admission counts), the expiry timers and the rate policies. */
  session: Omit<SessionContext, 'onAuthenticated' | 'expiries' | 'rates'>;
  directory: EventDirectory;
  hub: LiveHub;
  metrics: GatewayMetrics;
  logger: Logger;
}

interface SocketData {
  session: ClientSession;
}

/**
 * The uWS adapter on GATEWAY_PORT, path /live: admission of upgrades (draining, origin, caps on
 * connections, unauthenticated connections and connections per address), then frames and closes
 * handed to each connection's ClientSession; the periodic sweeps (slow clients, re-validation, entries)
 * and the drain on shutdown. Everything a connection does is the session's.
 */
export class GatewayServer implements Service {
  readonly name = 'websocket-server';
  private readonly sessions = new Set<ClientSession>();
  /** Open sessions not yet authenticated, oldest first (the first to make room). */
  private readonly unauthenticated = new Set<ClientSession>();
  private readonly admission: Admission;
  private readonly context: SessionContext;
  private listenSocket: us_listen_socket | undefined;
  private boundPort = 0;
  private nextId = 1;
  private draining = false;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly options: GatewayServerOptions,
    private readonly deps: GatewayServerDeps,
  ) {
    this.admission = new Admission(options);
    this.context = {
      ...deps.session,
      rates: sessionRates(deps.session.limits),
      expiries: new SharedDeadlines((session) => session.onTokenExpired()),
      onAuthenticated: (session) => {
        this.unauthenticated.delete(session);
        this.admission.authenticated();
        deps.metrics.unauthenticatedConnections.set(this.admission.unauthenticated);
      },
    };
    this.route(deps.app);
  }

  get port(): number {
    return this.boundPort;
  }

  get listening(): boolean {
    return this.listenSocket !== undefined;
  }

  get connectionCount(): number {
    return this.sessions.size;
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
    every(Math.min(1_000, Math.max(50, this.options.revalidateIntervalMs / 4)), () => {
      const now = Date.now();
      for (const session of this.sessions) session.revalidateDue(now);
    });
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
    const open = [...this.sessions];
    const reconnectWithinMs = drainSpreadMs(open.length, this.options.drainReconnectsPerSecond);
    for (const session of open) session.goAway(reconnectWithinMs);
    if (open.length > 0) await new Promise((resolve) => setTimeout(resolve, CLOSE_FLUSH_MS));
    this.deps.logger.info({ closed: open.length, reconnectWithinMs }, 'closed every connection with 1001');
  });

  private route(app: TemplatedApp): void {
    app.ws<SocketData>('/live', {
      // uWS drops a bigger frame itself, before buffering it: the protocol's limit is the only one.
      maxPayloadLength: PROTOCOL_LIMITS.maxMessageBytes,
      maxBackpressure: this.options.maxBackpressureBytes,
      closeOnBackpressureLimit: 0,
      idleTimeout: this.options.idleTimeoutSeconds,
      sendPingsAutomatically: true,
      compression: uWS.DISABLED,
      upgrade: (res, req, context) => this.onUpgrade(res, req, context),
      open: (ws) => this.onOpen(ws.getUserData().session, new UwsTransport(ws)),
      message: (ws, message, isBinary) => {
        const { session } = ws.getUserData();
        // Decoded now: uWS neuters the buffer when this handler returns.
        if (isBinary) session.onBinary();
        else session.onText(Buffer.from(message).toString('utf8'));
      },
      drain: (ws) => ws.getUserData().session.onDrain(),
      close: (ws, code, message) => this.onClose(ws.getUserData().session, code, message),
    });
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').end('not found: the live gateway serves WebSocket /live\n');
    });
  }

  private refuse(res: HttpResponse, name: UpgradeRefusalName): void {
    const refusal = UPGRADE_REFUSALS[name];
    this.deps.metrics.connectionsOpened.inc({ result: refusal.label });
    res.writeStatus(STATUS_TEXT[refusal.status] ?? `${refusal.status}`).end(`${name.replace('_', ' ')}\n`, true);
  }

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    if (this.draining) {
      this.refuse(res, 'draining');
      return;
    }
    const header = this.options.clientAddressHeader;
    const address = clientAddress(
      Buffer.from(res.getRemoteAddressAsText()).toString(),
      header === undefined ? undefined : req.getHeader(header),
    );
    const refusal = this.admission.refusal(address, req.getHeader('origin'));
    if (refusal === 'evict') {
      // Room is made by the oldest connection that has not authenticated: those can delay viewers, never keep them out.
      const oldest = this.unauthenticated.values().next();
      if (oldest.done === true) {
        this.refuse(res, 'full');
        return;
      }
      this.unauthenticated.delete(oldest.value);
      oldest.value.disconnect('crowded_out');
    } else if (refusal !== undefined) {
      this.refuse(res, refusal);
      return;
    }
    const session = new ClientSession(this.nextId++, address, this.context, req.getQuery('access_token') || undefined);
    this.deps.metrics.connectionsOpened.inc({ result: 'accepted' });
    // Upgraded at once, inside this handler. Verifying the query token first and upgrading from its
    // callback (uWS's async upgrade) dropped connections now and then with this uWS build (1006 right
    // after open), so the token is verified as soon as the socket is open; the client sees the same
    // protocol either way (auth ok, or error and 4401), and nothing is served before it is verified.
    res.upgrade<SocketData>(
      { session },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  }

  private onOpen(session: ClientSession, transport: UwsTransport<SocketData>): void {
    this.sessions.add(session);
    this.unauthenticated.add(session);
    this.admission.opened(session.address);
    this.updateGauges();
    this.deps.logger.debug({ connection: session.id }, 'connection opened');
    session.open(transport);
    if (this.draining) session.disconnect('shutdown');
  }

  private onClose(session: ClientSession, code: number, message: ArrayBuffer): void {
    const wasAuthenticated = session.authenticated;
    session.onClosed(code, Buffer.from(message).toString('utf8'));
    this.unauthenticated.delete(session);
    if (this.sessions.delete(session)) {
      this.admission.closed(session.address, wasAuthenticated);
      this.updateGauges();
    }
  }

  private updateGauges(): void {
    this.deps.metrics.connections.set(this.admission.connections);
    this.deps.metrics.unauthenticatedConnections.set(this.admission.unauthenticated);
  }
}
