// When an event's pending frame is published (batch window > 0): at the next slot of the event's own
// clock, slots one window apart at a phase of its own, on the pod's clock. A position waits at most one
// window for its publish, however late it was read.
//
// Not a timer started by the first position of a frame, as before: a read carries positions of every
// event, so every event started its window in the same read, all were published in the same loop
// iteration, and uWS wrote every viewer's frame in one drain after it (a write per viewer: 120-150 ms at
// 8,000 viewers of 5 KB frames on the fanout-window bench's core). The next read waited behind that
// drain, and the next windows started only at that late read: a window lasted the window plus the
// drain, its first positions waited both before the publish, and the last viewers of the drain got the
// frame one drain later still. With a phase per event a drain is one event's viewers, the events' drains
// are spread over the window and the reads run between them; with fixed slots a late read no longer
// moves the next publish. (A viewer of several events gets their frames in separate writes.)

/** The phase of an event's slots within the window: event ids spread by the golden ratio (consecutive ids far apart). */
export function slotPhaseMs(eventId: number, windowMs: number): number {
  const fraction = (eventId * 0.6180339887498949) % 1;
  return Math.floor((fraction < 0 ? fraction + 1 : fraction) * windowMs);
}

/**
 * The time (ms, the clock of `nowMs`) of the event's next slot after `nowMs`, within one window; the
 * one after when that is `lastSlotMs`, the slot its timer published last (Node's timers run on the
 * loop's cached time, so one may fire before its slot on this clock: the same slot again would be a
 * second frame right behind the first). After the clock stepped back `lastSlotMs` is not the next slot: ignored.
 */
export function nextSlotMs(nowMs: number, windowMs: number, eventId: number, lastSlotMs = Number.NEGATIVE_INFINITY): number {
  if (!(windowMs > 0)) throw new Error('flush slots need a window above 0 ms');
  const phase = slotPhaseMs(eventId, windowMs);
  const sinceSlot = (((nowMs - phase) % windowMs) + windowMs) % windowMs;
  const slot = nowMs - sinceSlot + windowMs;
  return slot === lastSlotMs ? slot + windowMs : slot;
}
