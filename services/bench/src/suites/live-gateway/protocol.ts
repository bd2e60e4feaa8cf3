// Messages between the live-gateway suite and its viewer processes (child_process.fork IPC).

/** Which server the viewers talk to: the gateway or the bare uWS loop (same JSON protocol), or Socket.IO. */
export type ViewerKind = 'live' | 'socketio';

export type ViewerCommand =
  | {
      cmd: 'connect';
      kind: ViewerKind;
      url: string;
      token?: string;
      viewers: number;
      events: number[];
      /** Viewer i of this batch watches events[(offset + i) % events.length]. */
      offset: number;
      /** One viewer in n is a probe that reads every frame whole, at once, for latency (1: all); the others only count. */
      sampleEvery?: number;
    }
  | { cmd: 'reset' }
  /** Closes the last `viewers` viewers made (by number), as if they left. */
  | { cmd: 'disconnect'; viewers: number }
  /** The frame count alone, after reading what is pending (cheap to ask often, e.g. while the last frames arrive). */
  | { cmd: 'count' }
  | { cmd: 'report' }
  | { cmd: 'close' };

export interface ViewerReport {
  /** `positions` frames received (every one, counted at the framing level) and their payload bytes. */
  frames: number;
  bytes: number;
  /** Frames the probes read whole, and the positions in them (all positions when sampleEvery is 1). */
  sampledFrames: number;
  positions: number;
  /** Latency (rx -> receive) of those positions, 1 ms buckets; the last bucket holds everything beyond. */
  latencyMs: number[];
  /** Viewers subscribed now, and viewers whose connection ended after they had subscribed. */
  open: number;
  lost: number;
}

export type ViewerReply =
  | { ok: 'connected'; failed: number }
  | { ok: 'reset' }
  | { ok: 'disconnected' }
  | { ok: 'count'; frames: number }
  | { ok: 'report'; report: ViewerReport }
  | { ok: 'closed' };

export const LATENCY_BUCKETS = 30_000;

/** p-th percentile (0..1) of 1 ms latency histograms summed. */
/** The mean of latency histograms (one bucket per ms), ms; NaN when nothing was recorded. */
export function meanMs(histograms: readonly number[][]): number {
  let count = 0;
  let sum = 0;
  for (const h of histograms)
    h.forEach((n, ms) => {
      count += n;
      sum += n * ms;
    });
  return count === 0 ? Number.NaN : sum / count;
}

export function percentileMs(histograms: readonly number[][], p: number): number {
  const merged = new Array<number>(LATENCY_BUCKETS + 1).fill(0);
  for (const h of histograms) h.forEach((count, ms) => (merged[ms] = (merged[ms] ?? 0) + count));
  const total = merged.reduce((a, b) => a + b, 0);
  if (total === 0) return Number.NaN;
  let seen = 0;
  for (let ms = 0; ms < merged.length; ms++) {
    seen += merged[ms] ?? 0;
    if (seen >= p * total) return ms;
  }
  return LATENCY_BUCKETS;
}
