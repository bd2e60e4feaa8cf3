import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelayMs, DEFAULT_BACKOFF } from '../src/index.js';

const low = () => 0;
const high = () => 1;

describe('backoff', () => {
  it('doubles from the first delay up to the cap, with jitter adding at most half again', () => {
    expect([0, 1, 2, 3].map((n) => backoffDelayMs(n, undefined, DEFAULT_BACKOFF, low))).toEqual([500, 1_000, 2_000, 4_000]);
    expect(backoffDelayMs(0, undefined, DEFAULT_BACKOFF, high)).toBe(750);
    expect(backoffDelayMs(50, undefined, DEFAULT_BACKOFF, low)).toBe(30_000);
    expect(backoffDelayMs(50, undefined, DEFAULT_BACKOFF, high)).toBe(45_000);
  });

  it("never comes back before the server's retry_after_ms, also beyond the cap", () => {
    expect(backoffDelayMs(0, 4_000, DEFAULT_BACKOFF, low)).toBe(4_000);
    expect(backoffDelayMs(0, 4_000, DEFAULT_BACKOFF, high)).toBe(6_000);
    expect(backoffDelayMs(0, 60_000, DEFAULT_BACKOFF, low)).toBe(60_000);
    // A hint shorter than the doubling delay does not shorten it.
    expect(backoffDelayMs(3, 100, DEFAULT_BACKOFF, low)).toBe(4_000);
  });

  it('spreads a crowd told the same hint at once over the hint and its next half', () => {
    const delays = Array.from({ length: 1_000 }, () => backoffDelayMs(0, 2_000));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(2_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(3_000);
    // Not one instant: the crowd lands in many different 50 ms slots.
    expect(new Set(delays.map((d) => Math.floor(d / 50))).size).toBeGreaterThan(10);
  });

  it('counts attempts and starts over after a success', () => {
    const backoff = new Backoff(DEFAULT_BACKOFF, low);
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([500, 1_000, 2_000]);
    expect(backoff.attempts).toBe(3);
    backoff.reset();
    expect(backoff.next(1_500)).toBe(1_500);
  });
});
