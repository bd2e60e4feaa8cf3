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

export type ParentMessage = { type: 'run'; options: FleetOptions; viewers: ViewerPlan[] } | { type: 'report' } | { type: 'stop' };

export type WorkerMessage = { type: 'stats'; stats: ViewerStatsData; finishedViewers: number } | { type: 'finished' };
