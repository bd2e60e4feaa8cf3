import { describe, expect, it } from 'vitest';
import { Histogram } from '../src/stats/histogram.js';

function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
}

describe('Histogram', () => {
  it('answers quantiles within 1% (or 0.01 ms) of the exact ones', () => {
    const values = Array.from({ length: 50_000 }, (_, i) => (i % 7 === 0 ? Math.random() * 5_000 : Math.random() * Math.random() * 300));
    const histogram = new Histogram();
    for (const v of values) histogram.record(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of [0.5, 0.9, 0.95, 0.99, 0.999]) {
      const exact = exactQuantile(sorted, q);
      const approx = histogram.quantile(q);
      expect(approx, `q=${q}`).toBeGreaterThanOrEqual(exact - 1e-9);
      expect(approx, `q=${q}`).toBeLessThanOrEqual(Math.max(exact * 1.0101, exact + 0.0101));
    }
    expect(histogram.count).toBe(values.length);
    expect(histogram.max).toBe(sorted.at(-1));
    expect(histogram.min).toBe(sorted[0]);
  });

  it('merges across workers into the histogram of all samples, also through its JSON form', () => {
    const a = new Histogram();
    const b = new Histogram();
    const all = new Histogram();
    for (let i = 0; i < 10_000; i++) {
      const v = (i * 37) % 2_000;
      (i % 3 === 0 ? a : b).record(v);
      all.record(v);
    }
    const merged = Histogram.from(JSON.parse(JSON.stringify(a.toData())) as ReturnType<Histogram['toData']>).merge(b.toData());
    expect(merged.summary()).toEqual(all.summary());
  });

  it('reports nothing (NaN) when empty, and counts negative values (clock rounding) as zero', () => {
    const histogram = new Histogram();
    expect(histogram.quantile(0.99)).toBeNaN();
    histogram.record(-3);
    expect(histogram.summary()).toMatchObject({ count: 1, min: 0, max: 0, p99: 0 });
  });
});
