import type { ViewerPhase } from '../scenarios.js';
import { Histogram, type HistogramData } from './histogram.js';

// What viewers measured, per phase (first connection or return after a drop). One instance per
// worker process; the parent merges them.

export interface PhaseStatsData {
  timeToOpen: HistogramData;
  timeToSnapshot: HistogramData;
  deliveryLatency: HistogramData;
  sessions: number;
  snapshots: number;
  failedSessions: number;
}

export interface ViewerStatsData {
  phases: Record<ViewerPhase, PhaseStatsData>;
  /** Positions frames received (every one) and parsed (one in `parseEvery` per viewer). */
  positionFrames: number;
  positionFramesParsed: number;
  positionsParsed: number;
  bytesReceived: number;
  /** Close codes of connections the server or network ended (not the viewer). */
  serverCloses: Record<string, number>;
  /** Error frames by code. */
  errors: Record<string, number>;
  /** Failed sessions by their last error (error code, socket error, or what was missing). */
  failures: Record<string, number>;
  unauthenticatedCloses: number;
  /** Requests sent again after authorization_unavailable or rate_limited. */
  retries: number;
  refreshesOk: number;
  refreshesFailed: number;
  /** Sockets open right now. */
  openSockets: number;
  /** p99 and max event-loop delay of the worker(s), ms: whether the load generator kept up. */
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
}

export class PhaseStats {
  readonly timeToOpen = new Histogram();
  readonly timeToSnapshot = new Histogram();
  readonly deliveryLatency = new Histogram();
  sessions = 0;
  snapshots = 0;
  failedSessions = 0;

  toData(): PhaseStatsData {
    return {
      timeToOpen: this.timeToOpen.toData(),
      timeToSnapshot: this.timeToSnapshot.toData(),
      deliveryLatency: this.deliveryLatency.toData(),
      sessions: this.sessions,
      snapshots: this.snapshots,
      failedSessions: this.failedSessions,
    };
  }

  merge(data: PhaseStatsData): void {
    this.timeToOpen.merge(data.timeToOpen);
    this.timeToSnapshot.merge(data.timeToSnapshot);
    this.deliveryLatency.merge(data.deliveryLatency);
    this.sessions += data.sessions;
    this.snapshots += data.snapshots;
    this.failedSessions += data.failedSessions;
  }

  /** Everything of both phases together. */
  static combined(...phases: PhaseStats[]): PhaseStats {
    const all = new PhaseStats();
    for (const phase of phases) all.merge(phase.toData());
    return all;
  }
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, n] of Object.entries(from)) into[key] = (into[key] ?? 0) + n;
}

export class ViewerStats {
  readonly phases: Record<ViewerPhase, PhaseStats> = { initial: new PhaseStats(), reconnect: new PhaseStats() };
  positionFrames = 0;
  positionFramesParsed = 0;
  positionsParsed = 0;
  bytesReceived = 0;
  readonly serverCloses: Record<string, number> = {};
  readonly errors: Record<string, number> = {};
  readonly failures: Record<string, number> = {};
  unauthenticatedCloses = 0;
  retries = 0;
  refreshesOk = 0;
  refreshesFailed = 0;
  openSockets = 0;
  eventLoopDelayP99Ms = 0;
  eventLoopDelayMaxMs = 0;

  /** Both phases together. */
  get all(): PhaseStats {
    return PhaseStats.combined(this.phases.initial, this.phases.reconnect);
  }

  get sessionFailureRate(): number {
    const all = this.all;
    return all.sessions === 0 ? 0 : all.failedSessions / all.sessions;
  }

  countServerClose(code: number): void {
    addCounts(this.serverCloses, { [String(code)]: 1 });
  }

  countError(code: string): void {
    addCounts(this.errors, { [code]: 1 });
  }

  countFailure(reason: string): void {
    addCounts(this.failures, { [reason]: 1 });
  }

  toData(): ViewerStatsData {
    return {
      phases: { initial: this.phases.initial.toData(), reconnect: this.phases.reconnect.toData() },
      positionFrames: this.positionFrames,
      positionFramesParsed: this.positionFramesParsed,
      positionsParsed: this.positionsParsed,
      bytesReceived: this.bytesReceived,
      serverCloses: { ...this.serverCloses },
      errors: { ...this.errors },
      failures: { ...this.failures },
      unauthenticatedCloses: this.unauthenticatedCloses,
      retries: this.retries,
      refreshesOk: this.refreshesOk,
      refreshesFailed: this.refreshesFailed,
      openSockets: this.openSockets,
      eventLoopDelayP99Ms: this.eventLoopDelayP99Ms,
      eventLoopDelayMaxMs: this.eventLoopDelayMaxMs,
    };
  }

  /** Adds another worker's figures (event-loop delay: the worst of them). */
  merge(data: ViewerStatsData): this {
    this.phases.initial.merge(data.phases.initial);
    this.phases.reconnect.merge(data.phases.reconnect);
    this.positionFrames += data.positionFrames;
    this.positionFramesParsed += data.positionFramesParsed;
    this.positionsParsed += data.positionsParsed;
    this.bytesReceived += data.bytesReceived;
    addCounts(this.serverCloses, data.serverCloses);
    addCounts(this.errors, data.errors);
    addCounts(this.failures, data.failures);
    this.unauthenticatedCloses += data.unauthenticatedCloses;
    this.retries += data.retries;
    this.refreshesOk += data.refreshesOk;
    this.refreshesFailed += data.refreshesFailed;
    this.openSockets += data.openSockets;
    this.eventLoopDelayP99Ms = Math.max(this.eventLoopDelayP99Ms, data.eventLoopDelayP99Ms);
    this.eventLoopDelayMaxMs = Math.max(this.eventLoopDelayMaxMs, data.eventLoopDelayMaxMs);
    return this;
  }
}
