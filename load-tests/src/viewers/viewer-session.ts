import { backoffDelayMs, CLOSE_CODES, RETRYABLE_ERROR_CODES, TOKEN_ERROR_CODES } from '@pitwall/live-protocol';
import WebSocket from 'ws';
import { ViewerFlow, parseServerFrame, type TokenRefresher } from '../protocol.js';
import type { ViewerPhase } from '../scenarios.js';
import type { ViewerStats } from '../stats/viewer-stats.js';

// One viewer session on the gateway over `ws`: the shared ViewerFlow (the same one the k6 viewer runs)
// on a Node socket, counting into ViewerStats. Many of these share one process, so most positions
// frames are only counted, not parsed.

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
  const startedAt = Date.now();
  let framesSeen = 0;
  let opened = false;
  phase.sessions++;

  const ws = new WebSocket(options.gatewayUrl, {
    perMessageDeflate: false,
    skipUTF8Validation: true,
    handshakeTimeout: options.snapshotTimeoutMs,
  });

  const flow = new ViewerFlow(
    { ...options, uid: `s${++sessionCounter}`, startedAt },
    {
      send: (text) => ws.send(text),
      isOpen: () => ws.readyState === WebSocket.OPEN,
      close: () => {
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(CLOSE_CODES.normal);
      },
      schedule: (run, ms) => {
        const timer = setTimeout(run, ms);
        return () => clearTimeout(timer);
      },
      snapshot: (elapsedMs) => {
        phase.snapshots++;
        phase.timeToSnapshot.record(elapsedMs);
      },
      delivery: (latencyMs) => phase.deliveryLatency.record(latencyMs),
      positionsFrame: (positions) => {
        stats.positionFramesParsed++;
        stats.positionsParsed += positions;
      },
      error: (code) => stats.countError(code),
      refreshed: (ok) => {
        if (ok) stats.refreshesOk++;
        else stats.refreshesFailed++;
      },
      retried: () => stats.retries++,
      retryDelayMs: (attempt, retryAfterMs) => backoffDelayMs(attempt, retryAfterMs),
      errorCodes: { retryable: RETRYABLE_ERROR_CODES, token: TOKEN_ERROR_CODES },
    },
  );

  ws.on('open', () => {
    opened = true;
    stats.openSockets++;
    phase.timeToOpen.record(Date.now() - startedAt);
    flow.opened();
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) return;
    const now = Date.now();
    stats.bytesReceived += data.length;
    if (flow.hasSnapshot && data.subarray(0, POSITIONS_PREFIX.length).equals(POSITIONS_PREFIX)) {
      stats.positionFrames++;
      if (framesSeen++ % options.parseEvery !== 0) return;
    }
    const frame = parseServerFrame(data.toString('utf8'));
    if (frame) flow.frame(frame, now);
  });
  ws.on('error', (err) => flow.socketError(err.message));

  const done = new Promise<SessionOutcome>((resolve) => {
    ws.on('close', (code: number) => {
      if (opened) stats.openSockets--;
      const outcome = flow.closed();
      if (outcome.closedByServer) {
        stats.countServerClose(code);
        if (code === CLOSE_CODES.unauthenticated) stats.unauthenticatedCloses++;
      }
      if (outcome.failed) {
        phase.failedSessions++;
        stats.countFailure(outcome.lastError ?? (outcome.gotSnapshot ? `closed ${code}` : 'no snapshot in time'));
      }
      resolve({ gotSnapshot: outcome.gotSnapshot, failed: outcome.failed, closeCode: code });
    });
  });

  return { done, drop: () => flow.closeOurselves(false) };
}
