import { Counter, Rate, Trend } from 'k6/metrics';
import { clearTimeout, setTimeout } from 'k6/timers';
import { WebSocket } from 'k6/websockets';
// The protocol's backoff by path: k6 runs TypeScript files but resolves no npm workspace packages.
import { backoffDelayMs } from '../../../services/live-protocol/src/backoff.ts';
import { CLOSE_CODES } from '../../../services/live-protocol/src/disconnects.ts';
import { isErrorCode, RETRYABLE_ERROR_CODES, TOKEN_ERROR_CODES } from '../../../services/live-protocol/src/errors.ts';
import { ViewerFlow, parseServerFrame, type TokenRefresher } from '../../src/protocol.ts';
import { METRIC, type ViewerPhase } from '../../src/scenarios.ts';

// One viewer session on the gateway over k6's WebSocket: the shared ViewerFlow (the same one the Node
// harness runs), recording into k6 metrics. Samples carry the tag `phase` (initial or reconnect).

const timeToOpen = new Trend(METRIC.timeToOpen, true);
const timeToSnapshot = new Trend(METRIC.timeToSnapshot, true);
const deliveryLatency = new Trend(METRIC.deliveryLatency, true);
const sessionFailed = new Rate(METRIC.sessionFailed);
const positionsReceived = new Counter(METRIC.positionsReceived);
const unauthenticatedCloses = new Counter(METRIC.unauthenticatedCloses);
const tokenRefreshFailed = new Rate(METRIC.tokenRefreshFailed);

export type { TokenRefresher };

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
    const ws = new WebSocket(options.gatewayUrl, null, { tags });
    const flow = new ViewerFlow(
      { ...options, uid, startedAt },
      {
        send: (text) => ws.send(text),
        isOpen: () => ws.readyState === WebSocket.OPEN,
        close: () => ws.close(CLOSE_CODES.normal),
        schedule: (run, ms) => {
          const timer = setTimeout(run, ms);
          return () => clearTimeout(timer);
        },
        snapshot: (elapsedMs) => timeToSnapshot.add(elapsedMs, tags),
        delivery: (latencyMs) => deliveryLatency.add(latencyMs, tags),
        positionsFrame: (positions) => positionsReceived.add(positions, tags),
        error: () => undefined,
        refreshed: (ok) => tokenRefreshFailed.add(!ok, tags),
        retried: () => undefined,
        retryDelayMs: (attempt, retryAfterMs) => backoffDelayMs(attempt, retryAfterMs),
        errorCodes: { retryable: RETRYABLE_ERROR_CODES, token: TOKEN_ERROR_CODES },
      },
    );

    ws.onopen = () => {
      timeToOpen.add(Date.now() - startedAt, tags);
      flow.opened();
    };
    ws.onmessage = (event) => {
      if (!event || typeof event.data !== 'string') return;
      const frame = parseServerFrame(event.data);
      if (frame) flow.frame(frame, Date.now());
    };
    ws.onerror = (event) => flow.socketError(event?.error ?? 'socket error');
    ws.addEventListener('close', (event) => {
      const closeCode = closeCodeOf(event);
      const outcome = flow.closed();
      const tokenClose =
        closeCode === CLOSE_CODES.unauthenticated ||
        (closeCode === undefined && isErrorCode(outcome.lastError) && TOKEN_ERROR_CODES.includes(outcome.lastError));
      if (outcome.closedByServer && tokenClose) unauthenticatedCloses.add(1, tags);
      sessionFailed.add(outcome.failed, tags);
      resolve({ gotSnapshot: outcome.gotSnapshot, failed: outcome.failed, closeCode, lastError: outcome.lastError });
    });
  });
}
