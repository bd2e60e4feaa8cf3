// The live gateway's WebSocket protocol (docs/interfaces.md, path /live) as a viewer speaks it: the
// messages, the frames and the session flow. Shared by the k6 scripts and the Node harness, so it imports
// only types (erased: k6 runs this file as it is) and uses no runtime-specific API (sockets, timers and the
// protocol's tables come in through ViewerFlowHost). Close codes, error codes and message shapes are
// @pitwall/live-protocol's: no copy here.
import type { AuthRequest, ServerMessage, SubscribeRequest, UnsubscribeRequest } from '@pitwall/live-protocol';

/** A position as the gateway sends it; only what a viewer measures is read. */
export interface LivePosition {
  device_id: string;
  /** Device GNSS time, ms. */
  ts: number;
  /** When ingestion received it, ms: delivery latency is arrival minus this. */
  rx: number;
}

/** A `type` of live-protocol's ServerMessage (a frame type it does not have does not compile). */
type Of<T extends ServerMessage['type']> = T;

export type ServerFrame =
  | { type: Of<'auth'>; status: string; expires_at: number | undefined; uid: string | undefined }
  | { type: Of<'subscribed'>; event_id: number; snapshot: unknown[]; uid: string | undefined }
  | { type: Of<'positions'>; event_id: number; positions: unknown[] }
  | { type: Of<'unsubscribed'>; event_id: number; reason: string }
  | { type: Of<'error'>; code: string; message: string; uid: string | undefined; retry_after_ms: number | undefined }
  | { type: Of<'pong'> };

export function authMessage(accessToken: string): string {
  return JSON.stringify({ type: 'auth', access_token: accessToken } satisfies AuthRequest);
}

export function subscribeMessage(eventId: number, uid: string): string {
  return JSON.stringify({ type: 'subscribe', event_id: eventId, uid } satisfies SubscribeRequest);
}

export function unsubscribeMessage(eventId: number, uid: string): string {
  return JSON.stringify({ type: 'unsubscribe', event_id: eventId, uid } satisfies UnsubscribeRequest);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** One server text frame, or undefined when it is not JSON or not a frame of the protocol. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  const eventId = typeof value.event_id === 'number' ? value.event_id : -1;
  switch (value.type) {
    case 'auth':
      return {
        type: 'auth',
        status: optionalString(value.status) ?? '',
        expires_at: typeof value.expires_at === 'number' ? value.expires_at : undefined,
        uid: optionalString(value.uid),
      };
    case 'subscribed':
      return Array.isArray(value.snapshot)
        ? { type: 'subscribed', event_id: eventId, snapshot: value.snapshot, uid: optionalString(value.uid) }
        : undefined;
    case 'positions':
      return Array.isArray(value.positions) ? { type: 'positions', event_id: eventId, positions: value.positions } : undefined;
    case 'unsubscribed':
      return { type: 'unsubscribed', event_id: eventId, reason: optionalString(value.reason) ?? '' };
    case 'error':
      return {
        type: 'error',
        code: optionalString(value.code) ?? '',
        message: optionalString(value.message) ?? '',
        uid: optionalString(value.uid),
        retry_after_ms: typeof value.retry_after_ms === 'number' ? value.retry_after_ms : undefined,
      };
    case 'pong':
      return { type: 'pong' };
    default:
      return undefined;
  }
}

/** The `rx` of a position from a frame, or undefined when the element is not a position. */
export function receivedAtOf(position: unknown): number | undefined {
  return isRecord(position) && typeof position.rx === 'number' ? position.rx : undefined;
}

/** The device id of a position from a frame, or undefined when the element is not a position. */
export function deviceIdOf(position: unknown): string | undefined {
  return isRecord(position) && typeof position.device_id === 'string' ? position.device_id : undefined;
}

/** Renews the viewer's access token before it expires. */
export interface TokenRefresher {
  /** Refresh this many seconds before the token's `expires_at`. */
  leadSeconds: number;
  /** A fresh access token (Directus /auth/refresh); rejects when Directus refuses. */
  renew(): Promise<string>;
}

/** When to refresh a token expiring at `expiresAtMs`: `leadSeconds` before, but at most half its remaining life. */
export function refreshAtMs(nowMs: number, expiresAtMs: number, leadSeconds: number): number {
  const remaining = Math.max(0, expiresAtMs - nowMs);
  return nowMs + Math.max(remaining / 2, remaining - leadSeconds * 1000);
}

export interface ViewerFlowOptions {
  accessToken: string;
  eventId: number;
  /** The `uid` the subscribe requests carry. */
  uid: string;
  startedAt: number;
  /** The viewer closes the socket itself at this time (ms since the epoch). */
  untilMs: number;
  snapshotTimeoutMs: number;
  /** Keep the session alive across token expiry by refreshing before it. */
  refresher?: TokenRefresher;
}

/** What the flow needs from the runtime (k6 or Node), and where it reports what it measured. */
export interface ViewerFlowHost {
  send(text: string): void;
  isOpen(): boolean;
  /** Close the socket as the viewer (normal closure). */
  close(): void;
  /** Runs `run` after `ms`; the returned function cancels it. */
  schedule(run: () => void, ms: number): () => void;
  snapshot(elapsedMs: number): void;
  /** One delivered position: arrival minus `rx`. */
  delivery(latencyMs: number): void;
  /** A positions frame was read; `positions` of its elements carried an `rx`. */
  positionsFrame(positions: number): void;
  error(code: string): void;
  refreshed(ok: boolean): void;
  retried(): void;
  /**
   * How long to wait before retry number `attempt` (0 first) after a retryable error carrying the
   * server's `retry_after_ms`: the protocol's one jittered backoff, `backoffDelayMs` of
   * @pitwall/live-protocol (imported by the host: this module imports nothing, for k6).
   */
  retryDelayMs(attempt: number, retryAfterMs: number | undefined): number;
  /**
   * The protocol's error codes by what a viewer does about them: RETRYABLE_ERROR_CODES and
   * TOKEN_ERROR_CODES of @pitwall/live-protocol (passed in by the host, as above).
   */
  readonly errorCodes: { readonly retryable: readonly string[]; readonly token: readonly string[] };
}

export interface ViewerFlowOutcome {
  gotSnapshot: boolean;
  /** No snapshot, or the session ended other than by the viewer. */
  failed: boolean;
  /** The server or the network closed the socket, not the viewer. */
  closedByServer: boolean;
  lastError: string | undefined;
}

const noop = (): void => undefined;

/**
 * One viewer session as the live map runs it: authenticate with the first message, subscribe to one
 * event, take the snapshot, then receive positions until `untilMs`; refresh the token before it expires,
 * ask again after a retryable error, give up when no snapshot comes in time.
 */
export class ViewerFlow {
  private gotSnapshot = false;
  private authenticated = false;
  private subscribeSent = false;
  private closingOurselves = false;
  private failed = false;
  private refreshPending = false;
  private lastError: string | undefined;
  private cancelSnapshotTimer: () => void;
  private cancelEndTimer: () => void;
  private cancelRefreshTimer: () => void = noop;
  private cancelRetryTimer: () => void = noop;
  /** Retries since the last success (the backoff's attempt). */
  private retries = 0;

  constructor(
    private readonly options: ViewerFlowOptions,
    private readonly host: ViewerFlowHost,
  ) {
    this.cancelSnapshotTimer = host.schedule(() => {
      if (!this.gotSnapshot) this.closeOurselves(true);
    }, options.snapshotTimeoutMs);
    this.cancelEndTimer = host.schedule(() => this.closeOurselves(false), Math.max(0, options.untilMs - options.startedAt));
  }

  get hasSnapshot(): boolean {
    return this.gotSnapshot;
  }

  /** Ends the session from the viewer's side; `markFailed` when it ends because something went wrong. */
  closeOurselves(markFailed: boolean): void {
    this.failed ||= markFailed;
    this.closingOurselves = true;
    this.host.close();
  }

  opened(): void {
    this.host.send(authMessage(this.options.accessToken));
  }

  socketError(message: string): void {
    if (!this.closingOurselves) this.lastError = message;
  }

  frame(frame: ServerFrame, now: number): void {
    switch (frame.type) {
      case 'auth':
        if (frame.status !== 'ok') return;
        this.authenticated = true;
        if (this.refreshPending) {
          this.refreshPending = false;
          this.host.refreshed(true);
        }
        this.scheduleRefresh(frame.expires_at);
        if (!this.subscribeSent) {
          this.subscribeSent = true;
          this.host.send(subscribeMessage(this.options.eventId, this.options.uid));
        }
        return;
      case 'subscribed':
        if (this.gotSnapshot) return;
        this.gotSnapshot = true;
        this.retries = 0;
        this.cancelSnapshotTimer();
        this.host.snapshot(now - this.options.startedAt);
        return;
      case 'positions': {
        let count = 0;
        for (const position of frame.positions) {
          const rx = receivedAtOf(position);
          if (rx === undefined) continue;
          this.host.delivery(now - rx);
          count++;
        }
        this.host.positionsFrame(count);
        return;
      }
      case 'unsubscribed':
        if (frame.reason !== 'client') this.closeOurselves(true);
        return;
      case 'error':
        this.onError(frame.code, frame.retry_after_ms);
        return;
      case 'pong':
        return;
    }
  }

  /** The socket has closed; returns how the session ended. */
  closed(): ViewerFlowOutcome {
    this.cancelSnapshotTimer();
    this.cancelEndTimer();
    this.cancelRefreshTimer();
    this.cancelRetryTimer();
    const closedByServer = !this.closingOurselves;
    // Closed by the server or the network before the viewer was done: the viewer lost its map.
    if (closedByServer || !this.gotSnapshot) this.failed = true;
    return { gotSnapshot: this.gotSnapshot, failed: this.failed, closedByServer, lastError: this.lastError };
  }

  private onError(code: string, retryAfterMs: number | undefined): void {
    this.lastError = code;
    this.host.error(code);
    if (this.refreshPending && this.host.errorCodes.token.includes(code)) {
      this.refreshPending = false;
      this.host.refreshed(false);
    }
    if (this.gotSnapshot) return;
    if (!this.host.errorCodes.retryable.includes(code)) {
      this.closeOurselves(true);
      return;
    }
    // Busy, not refused (Directus slow or down, too many requests): ask again after the server's hint
    // plus jitter, backing off further on each retry, as the live map does, until the snapshot timeout
    // ends the attempt.
    this.host.retried();
    this.cancelRetryTimer();
    this.cancelRetryTimer = this.host.schedule(
      () => {
        this.cancelRetryTimer = noop;
        if (!this.host.isOpen() || this.gotSnapshot) return;
        this.host.send(
          this.authenticated ? subscribeMessage(this.options.eventId, this.options.uid) : authMessage(this.options.accessToken),
        );
      },
      this.host.retryDelayMs(this.retries++, retryAfterMs),
    );
  }

  private scheduleRefresh(expiresAt: number | undefined): void {
    const refresher = this.options.refresher;
    if (!refresher || expiresAt === undefined) return;
    this.cancelRefreshTimer();
    const now = Date.now();
    this.cancelRefreshTimer = this.host.schedule(
      () => {
        this.cancelRefreshTimer = noop;
        this.refreshPending = true;
        refresher.renew().then(
          (token) => {
            if (this.host.isOpen()) this.host.send(authMessage(token));
          },
          (err: unknown) => {
            this.refreshPending = false;
            this.lastError = `refresh: ${String(err)}`;
            this.host.refreshed(false);
          },
        );
      },
      refreshAtMs(now, expiresAt, refresher.leadSeconds) - now,
    );
  }
}
