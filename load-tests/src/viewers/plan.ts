import type { ViewerStatsData } from '../stats/viewer-stats.js';

// What the parent tells a viewer worker process, and what it reports back (JSON over the IPC channel).

/** One viewer's schedule (times are ms since the epoch: parent and workers share the machine's clock). */
export interface ViewerPlan {
  accessToken: string;
  /** Needed only when tokens are refreshed. */
  refreshToken?: string;
  eventId: number;
  connectAtMs: number;
  /** Reconnect storm: the viewer drops its connection at dropAtMs and returns at returnAtMs. */
  dropAtMs?: number;
  returnAtMs?: number;
  /** The viewer closes for good at this time. */
  untilMs: number;
}

export interface FleetOptions {
  /** ws:// URL of the gateway's /live. */
  gatewayUrl: string;
  snapshotTimeoutMs: number;
  /** Parse one positions frame in this many per session (the others are only counted). */
  parseEvery: number;
  /** Token refresh: Directus to refresh at and how long before expiry. Unset: tokens are not refreshed. */
  refresh?: { directusUrl: string; leadSeconds: number };
}

/**
 * A viewer on @pitwall/live-client (the reconnect storm): subscribes to one event at once and follows it
 * for the rest of the run, across gateways (the client moves to the next URL on 1001 and resumes from
 * its cursor).
 */
export interface ResumeViewerPlan {
  /** Unique over the fleet: the parent checks that every viewer reports exactly once. */
  id: number;
  eventId: number;
}

export interface ResumeFleetOptions {
  /** ws:// URLs of the gateways' /live, in the order the client tries them. */
  urls: string[];
  accessToken: string;
}

/** What one resume viewer saw; times from the creation of the socket that got the reply (ms). */
export interface ResumeViewerResult {
  id: number;
  /** New connection to the first `subscribed` (the snapshot). */
  firstSubscribedMs?: number;
  /** New connection to the first resume's `subscribed`, and that reply's `recovered`. */
  resumedMs?: number;
  recovered?: boolean;
  /** `subscribed` replies after the first: 1 when the viewer moved once. */
  resumes: number;
}

/** A worker's own load: whether the load generator, not the server, set the pace. */
export interface WorkerLoad {
  /** Event-loop delay since the run started or the last report that restarted it (ms). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** User + system CPU of the worker process since it started (process.cpuUsage). */
  cpuSeconds: number;
}

export interface ResumeProgress {
  firstSubscribed: number;
  resumed: number;
}

export type ParentMessage =
  | { type: 'run'; options: FleetOptions; viewers: ViewerPlan[] }
  | { type: 'run-resume'; options: ResumeFleetOptions; viewers: ResumeViewerPlan[] }
  | { type: 'report' }
  /** withViewers: every viewer's result (else only the counts); restartLoopDelay: the next report's loop delay starts now. */
  | { type: 'resume-report'; withViewers: boolean; restartLoopDelay: boolean }
  | { type: 'stop' };

export type WorkerMessage =
  | { type: 'stats'; stats: ViewerStatsData; finishedViewers: number }
  | {
      type: 'resume-stats';
      progress: ResumeProgress;
      load: WorkerLoad;
      /** The clients' `error` events by code. */
      errors: Record<string, number>;
      viewers?: ResumeViewerResult[];
    }
  | { type: 'finished' };
