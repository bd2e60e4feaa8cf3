import { Counter, Rate, Trend } from 'k6/metrics';
import { clearTimeout, setTimeout } from 'k6/timers';
import { WebSocket } from 'k6/websockets';
import {
  CLOSE_CODE,
  RETRYABLE_ERROR_CODES,
  TOKEN_ERROR_CODES,
  authMessage,
  parseServerFrame,
  receivedAtOf,
  subscribeMessage,
  type ServerFrame,
} from '../../src/protocol.ts';
import { METRIC, refreshAtMs, type ViewerPhase } from '../../src/scenarios.ts';

// One viewer session on the gateway, as the live map runs it: open /live, authenticate with the first
// message, subscribe to one event, receive the snapshot and then positions until `untilMs`. Samples
// carry the tag `phase` (initial or reconnect).

const timeToOpen = new Trend(METRIC.timeToOpen, true);
const timeToSnapshot = new Trend(METRIC.timeToSnapshot, true);
const deliveryLatency = new Trend(METRIC.deliveryLatency, true);
const sessionFailed = new Rate(METRIC.sessionFailed);
const positionsReceived = new Counter(METRIC.positionsReceived);
const unauthenticatedCloses = new Counter(METRIC.unauthenticatedCloses);
const tokenRefreshFailed = new Rate(METRIC.tokenRefreshFailed);

export interface TokenRefresher {
  /** Refresh this many seconds before the token's `expires_at`. */
  leadSeconds: number;
  /** A fresh access token (Directus /auth/refresh); rejects when Directus refuses. */
  renew(): Promise<string>;
}

export interface WatchOptions {
  gatewayUrl: string;
  accessToken: string;
  eventId: number;
  phase: ViewerPhase;
  /** The viewer closes the socket itself at this time (ms since the epoch). */
  untilMs: number;
  snapshotTimeoutMs: number;
  /** Keep the session alive across token expiry by refreshing before it. */
  refresher?: TokenRefresher;
}

export interface WatchOutcome {
  gotSnapshot: boolean;
  failed: boolean;
  closeCode: number | undefined;
  lastError: string | undefined;
}

// k6 added code/reason to the close event in late 2025; older versions send none.
function closeCodeOf(event: unknown): number | undefined {
  return typeof event === 'object' && event !== null && 'code' in event && typeof event.code === 'number' ? event.code : undefined;
}

let sessions = 0;

/** A session that could not even start (e.g. the Directus login failed): counted as failed. */
export function recordFailedStart(phase: ViewerPhase): void {
  sessionFailed.add(true, { phase });
}

/** Runs one session; resolves when its socket has closed. Never rejects. */
export function watch(options: WatchOptions): Promise<WatchOutcome> {
  const tags = { phase: options.phase };
  const uid = `s${++sessions}`;
  // Counters sampled once per session so that thresholds on them always have data.
  unauthenticatedCloses.add(0, tags);
  return new Promise((resolve) => {
    const startedAt = Date.now();
    let gotSnapshot = false;
    let subscribeSent = false;
    let closingOurselves = false;
    let failed = false;
    let lastError: string | undefined;
    let refreshPending = false;
    let refreshTimer: number | undefined;
    let retryTimer: number | undefined;
    let authenticated = false;
    const ws = new WebSocket(options.gatewayUrl, null, { tags });

    const closeOurselves = (markFailed: boolean): void => {
      failed ||= markFailed;
      closingOurselves = true;
      ws.close(CLOSE_CODE.normal);
    };
    const snapshotTimer = setTimeout(() => {
      if (!gotSnapshot) closeOurselves(true);
    }, options.snapshotTimeoutMs);
    const endTimer = setTimeout(() => closeOurselves(false), Math.max(0, options.untilMs - startedAt));

    const scheduleRefresh = (expiresAt: number | undefined): void => {
      const refresher = options.refresher;
      if (!refresher || expiresAt === undefined) return;
      if (refreshTimer !== undefined) clearTimeout(refreshTimer);
      const now = Date.now();
      refreshTimer = setTimeout(
        () => {
          refreshTimer = undefined;
          refreshPending = true;
          refresher.renew().then(
            (token) => ws.send(authMessage(token)),
            (err: unknown) => {
              refreshPending = false;
              tokenRefreshFailed.add(true, tags);
              lastError = `refresh: ${String(err)}`;
            },
          );
        },
        refreshAtMs(now, expiresAt, refresher.leadSeconds) - now,
      );
    };

    const onFrame = (frame: ServerFrame): void => {
      const now = Date.now();
      switch (frame.type) {
        case 'auth':
          if (frame.status !== 'ok') return;
          authenticated = true;
          if (refreshPending) {
            refreshPending = false;
            tokenRefreshFailed.add(false, tags);
          }
          scheduleRefresh(frame.expires_at);
          if (!subscribeSent) {
            subscribeSent = true;
            ws.send(subscribeMessage(options.eventId, uid));
          }
          return;
        case 'subscribed':
          if (gotSnapshot) return;
          gotSnapshot = true;
          clearTimeout(snapshotTimer);
          timeToSnapshot.add(now - startedAt, tags);
          return;
        case 'positions': {
          let count = 0;
          for (const position of frame.positions) {
            const rx = receivedAtOf(position);
            if (rx === undefined) continue;
            deliveryLatency.add(now - rx, tags);
            count++;
          }
          positionsReceived.add(count, tags);
          return;
        }
        case 'unsubscribed':
          if (frame.reason !== 'client') closeOurselves(true);
          return;
        case 'error':
          lastError = frame.code;
          if (refreshPending && TOKEN_ERROR_CODES.includes(frame.code)) {
            refreshPending = false;
            tokenRefreshFailed.add(true, tags);
          }
          if (gotSnapshot) return;
          // Busy, not refused: ask again shortly until the snapshot timeout; anything else ends the session.
          if (RETRYABLE_ERROR_CODES.includes(frame.code)) {
            if (retryTimer !== undefined) clearTimeout(retryTimer);
            retryTimer = setTimeout(
              () => {
                retryTimer = undefined;
                if (ws.readyState !== WebSocket.OPEN || gotSnapshot) return;
                ws.send(authenticated ? subscribeMessage(options.eventId, uid) : authMessage(options.accessToken));
              },
              500 + Math.random() * 1000,
            );
          } else closeOurselves(true);
          return;
        case 'pong':
          return;
      }
    };

    ws.onopen = () => {
      timeToOpen.add(Date.now() - startedAt, tags);
      ws.send(authMessage(options.accessToken));
    };
    ws.onmessage = (event) => {
      if (!event || typeof event.data !== 'string') return;
      const frame = parseServerFrame(event.data);
      if (frame) onFrame(frame);
    };
    ws.onerror = (event) => {
      if (!closingOurselves) lastError = event?.error ?? 'socket error';
    };
    ws.addEventListener('close', (event) => {
      clearTimeout(snapshotTimer);
      clearTimeout(endTimer);
      if (refreshTimer !== undefined) clearTimeout(refreshTimer);
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      const closeCode = closeCodeOf(event);
      const tokenClose =
        closeCode === CLOSE_CODE.unauthenticated || (closeCode === undefined && TOKEN_ERROR_CODES.includes(lastError ?? ''));
      if (!closingOurselves && tokenClose) unauthenticatedCloses.add(1, tags);
      // Closed by the server or the network before the viewer was done: the viewer lost its map.
      if (!closingOurselves) failed = true;
      if (!gotSnapshot) failed = true;
      sessionFailed.add(failed, tags);
      resolve({ gotSnapshot, failed, closeCode, lastError });
    });
  });
}
