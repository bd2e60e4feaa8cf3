import WebSocket from 'ws';
import {
  CLOSE_CODE,
  RETRYABLE_ERROR_CODES,
  TOKEN_ERROR_CODES,
  authMessage,
  parseServerFrame,
  receivedAtOf,
  subscribeMessage,
  type ServerFrame,
} from '../protocol.js';
import { refreshAtMs, type ViewerPhase } from '../scenarios.js';
import type { ViewerStats } from '../stats/viewer-stats.js';

// One viewer session on the gateway, the same steps as the k6 viewer (load-tests/k6/lib/viewer.ts):
// open /live, authenticate with the first message, subscribe to one event, take the snapshot, then
// receive positions until `untilMs` (or until dropped). Many of these share one process.

export interface TokenRefresher {
  leadSeconds: number;
  /** A fresh access token (Directus /auth/refresh); rejects when Directus refuses. */
  renew(): Promise<string>;
}

export interface SessionOptions {
  gatewayUrl: string;
  accessToken: string;
  eventId: number;
  phase: ViewerPhase;
  untilMs: number;
  snapshotTimeoutMs: number;
  /** Parse one positions frame in this many (per session) for delivery latency; the rest are only counted. */
  parseEvery: number;
  refresher?: TokenRefresher;
}

export interface SessionOutcome {
  gotSnapshot: boolean;
  failed: boolean;
  closeCode: number;
}

export interface RunningSession {
  readonly done: Promise<SessionOutcome>;
  /** Closes the socket now, as the viewer (not a failure): a dropped connection, or the end of the run. */
  drop(): void;
}

// `{"type":"positions"`: recognised without parsing when the frame is not sampled.
const POSITIONS_PREFIX = Buffer.from('{"type":"positions"');

let sessionCounter = 0;

export function startViewerSession(options: SessionOptions, stats: ViewerStats): RunningSession {
  const phase = stats.phases[options.phase];
  const uid = `s${++sessionCounter}`;
  const startedAt = Date.now();
  let gotSnapshot = false;
  let subscribeSent = false;
  let closingOurselves = false;
  let failed = false;
  let lastError: string | undefined;
  let refreshPending = false;
  let refreshTimer: NodeJS.Timeout | undefined;
  let framesSeen = 0;
  let opened = false;
  let authenticated = false;
  let retryTimer: NodeJS.Timeout | undefined;
  phase.sessions++;

  const ws = new WebSocket(options.gatewayUrl, {
    perMessageDeflate: false,
    skipUTF8Validation: true,
    handshakeTimeout: options.snapshotTimeoutMs,
  });

  const closeOurselves = (markFailed: boolean): void => {
    failed ||= markFailed;
    closingOurselves = true;
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(CLOSE_CODE.normal);
  };
  const snapshotTimer = setTimeout(() => {
    if (!gotSnapshot) closeOurselves(true);
  }, options.snapshotTimeoutMs);
  const endTimer = setTimeout(() => closeOurselves(false), Math.max(0, options.untilMs - startedAt));

  const scheduleRefresh = (expiresAt: number | undefined): void => {
    const refresher = options.refresher;
    if (!refresher || expiresAt === undefined) return;
    clearTimeout(refreshTimer);
    const now = Date.now();
    refreshTimer = setTimeout(
      () => {
        refreshTimer = undefined;
        refreshPending = true;
        refresher.renew().then(
          (token) => {
            if (ws.readyState === WebSocket.OPEN) ws.send(authMessage(token));
          },
          () => {
            refreshPending = false;
            stats.refreshesFailed++;
          },
        );
      },
      refreshAtMs(now, expiresAt, refresher.leadSeconds) - now,
    );
  };

  const onFrame = (frame: ServerFrame, now: number): void => {
    switch (frame.type) {
      case 'auth':
        if (frame.status !== 'ok') return;
        authenticated = true;
        if (refreshPending) {
          refreshPending = false;
          stats.refreshesOk++;
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
        phase.snapshots++;
        phase.timeToSnapshot.record(now - startedAt);
        return;
      case 'positions':
        stats.positionFramesParsed++;
        for (const position of frame.positions) {
          const rx = receivedAtOf(position);
          if (rx === undefined) continue;
          phase.deliveryLatency.record(now - rx);
          stats.positionsParsed++;
        }
        return;
      case 'unsubscribed':
        if (frame.reason !== 'client') closeOurselves(true);
        return;
      case 'error':
        lastError = frame.code;
        stats.countError(frame.code);
        if (refreshPending && TOKEN_ERROR_CODES.includes(frame.code)) {
          refreshPending = false;
          stats.refreshesFailed++;
        }
        if (gotSnapshot) return;
        // Busy, not refused (Directus slow or down, too many requests): ask again shortly, as the live
        // map does, until the snapshot timeout ends the attempt. Anything else ends the session.
        if (RETRYABLE_ERROR_CODES.includes(frame.code)) {
          stats.retries++;
          clearTimeout(retryTimer);
          retryTimer = setTimeout(
            () => {
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

  ws.on('open', () => {
    opened = true;
    stats.openSockets++;
    phase.timeToOpen.record(Date.now() - startedAt);
    ws.send(authMessage(options.accessToken));
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) return;
    const now = Date.now();
    stats.bytesReceived += data.length;
    if (gotSnapshot && data.subarray(0, POSITIONS_PREFIX.length).equals(POSITIONS_PREFIX)) {
      stats.positionFrames++;
      if (framesSeen++ % options.parseEvery !== 0) return;
    }
    const frame = parseServerFrame(data.toString('utf8'));
    if (frame) onFrame(frame, now);
  });
  ws.on('error', (err) => {
    if (!closingOurselves) lastError = err.message;
  });

  const done = new Promise<SessionOutcome>((resolve) => {
    ws.on('close', (code: number) => {
      clearTimeout(snapshotTimer);
      clearTimeout(endTimer);
      clearTimeout(refreshTimer);
      clearTimeout(retryTimer);
      if (opened) stats.openSockets--;
      if (!closingOurselves) {
        stats.countServerClose(code);
        if (code === CLOSE_CODE.unauthenticated) stats.unauthenticatedCloses++;
        failed = true;
      }
      if (!gotSnapshot) failed = true;
      if (failed) {
        phase.failedSessions++;
        stats.countFailure(lastError ?? (gotSnapshot ? `closed ${code}` : 'no snapshot in time'));
      }
      resolve({ gotSnapshot, failed, closeCode: code });
    });
  });

  return { done, drop: () => closeOurselves(false) };
}
