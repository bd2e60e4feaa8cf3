import { describe, expect, it } from 'vitest';
import { nextSlotMs, slotPhaseMs } from '../src/fanout/flush-slots.js';

// When an event's pending frame is published: pure arithmetic on a given clock, no timers.

const WINDOW = 500;
const T0 = 1_750_000_000_000;

describe('flush slots', () => {
  it('publishes at the next slot within one window, the same slot whenever in the window the first position is read', () => {
    const slot = nextSlotMs(T0, WINDOW, 7);
    expect(slot - T0).toBeGreaterThan(0);
    expect(slot - T0).toBeLessThanOrEqual(WINDOW);
    // A read late by most of a window (the loop busy writing other frames) does not push the publish back.
    for (const late of [1, 100, WINDOW - 1]) expect(nextSlotMs(slot - WINDOW + late, WINDOW, 7)).toBe(slot);
    // The slots of one event are one window apart.
    expect(nextSlotMs(slot, WINDOW, 7)).toBe(slot + WINDOW);
    expect((slot - slotPhaseMs(7, WINDOW)) % WINDOW).toBe(0);
  });

  it('gives consecutive events phases of their own, spread over the window, so their frames are not written in one go', () => {
    const phases = Array.from({ length: 10 }, (_, i) => slotPhaseMs(i + 1, WINDOW)).sort((a, b) => a - b);
    const gaps = phases.map((p, i) => (i === 0 ? p + WINDOW - (phases.at(-1) ?? 0) : p - (phases[i - 1] ?? 0)));
    for (const phase of phases) expect(phase >= 0 && phase < WINDOW).toBe(true);
    // Ten events: no two within a twentieth of the window of each other.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(WINDOW / 20);
    // Read together, they are published at ten different times.
    expect(new Set(Array.from({ length: 10 }, (_, i) => nextSlotMs(T0, WINDOW, i + 1))).size).toBe(10);
  });

  it('takes the slot after the one its timer just published when that timer fired a little early, and ignores it after the clock stepped back', () => {
    const slot = nextSlotMs(T0, WINDOW, 3);
    expect(nextSlotMs(slot - 1, WINDOW, 3)).toBe(slot);
    expect(nextSlotMs(slot - 1, WINDOW, 3, slot)).toBe(slot + WINDOW);
    const stepped = slot - 10 * WINDOW + 1;
    expect(nextSlotMs(stepped, WINDOW, 3, slot)).toBe(slot - 9 * WINDOW);
  });

  it('needs a window', () => {
    expect(() => nextSlotMs(T0, 0, 1)).toThrow(/window/);
  });
});
