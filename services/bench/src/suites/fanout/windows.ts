// The feed at a batch window and the length of a step at it (fanout-window): pure. The feed's positions
// per event per second are fixed, so a larger window means fewer, bigger frames for the same viewers.

/** Positions per event per second of the feed, whatever the window: at 100 ms, ~6 per frame of ~1.1 KB. */
export const POSITIONS_PER_EVENT_PER_SECOND = 60;
/** A step lasts at least this many windows, so a 500 ms window still gets enough frames per viewer to count and time. */
export const MIN_WINDOWS_PER_STEP = 10;

/** The frames one event's viewers get at a window. */
export function frameShape(windowMs: number, positionsPerEventPerSecond = POSITIONS_PER_EVENT_PER_SECOND) {
  if (!(windowMs > 0)) throw new Error('the window must be above 0 ms');
  return { framesPerSecond: 1000 / windowMs, positionsPerFrame: (positionsPerEventPerSecond * windowMs) / 1000 };
}

/** How long the producer runs in a step at a window: the suite's step, or MIN_WINDOWS_PER_STEP windows if longer. */
export function stepMsAt(windowMs: number, stepMs: number): number {
  return Math.max(stepMs, MIN_WINDOWS_PER_STEP * windowMs);
}
