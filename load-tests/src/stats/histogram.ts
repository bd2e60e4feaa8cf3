// A latency histogram with bounded memory and ~1% relative error: millions of samples from many
// viewers fold into ~1,500 counters that merge across worker processes. Values are milliseconds.

const LINEAR_STEP_MS = 0.01;
const LINEAR_BUCKETS = 100; // 0..1 ms in 0.01 ms steps
const GROWTH = 1.01; // above 1 ms: each bucket 1% wider than the last
const MAX_MS = 3_600_000;
const LOG_BUCKETS = Math.ceil(Math.log(MAX_MS) / Math.log(GROWTH)) + 1;

function bucketOf(ms: number): number {
  if (ms < 1) return Math.max(0, Math.floor(ms / LINEAR_STEP_MS));
  return LINEAR_BUCKETS + Math.min(LOG_BUCKETS - 1, Math.floor(Math.log(ms) / Math.log(GROWTH)));
}

function upperBoundOf(bucket: number): number {
  if (bucket < LINEAR_BUCKETS) return (bucket + 1) * LINEAR_STEP_MS;
  return GROWTH ** (bucket - LINEAR_BUCKETS + 1);
}

/** Plain-JSON form for IPC: sparse [bucket, count] pairs. */
export interface HistogramData {
  buckets: [number, number][];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export interface Summary {
  count: number;
  mean: number;
  min: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  max: number;
}

export class Histogram {
  private readonly counts = new Float64Array(LINEAR_BUCKETS + LOG_BUCKETS);
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  record(ms: number): void {
    const value = ms > 0 ? ms : 0;
    const bucket = bucketOf(value);
    this.counts[bucket] = (this.counts[bucket] ?? 0) + 1;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  merge(other: Histogram | HistogramData): this {
    const data = other instanceof Histogram ? other.toData() : other;
    for (const [bucket, n] of data.buckets) this.counts[bucket] = (this.counts[bucket] ?? 0) + n;
    this.count += data.count;
    this.sum += data.sum;
    if (data.count > 0) {
      this.min = Math.min(this.min, data.min);
      this.max = Math.max(this.max, data.max);
    }
    return this;
  }

  /** The q-quantile (0..1): the upper bound of the bucket holding it, capped at the exact maximum. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(upperBoundOf(i), this.max);
    }
    return this.max;
  }

  summary(): Summary {
    const empty = this.count === 0;
    return {
      count: this.count,
      mean: empty ? Number.NaN : this.sum / this.count,
      min: empty ? Number.NaN : this.min,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p95: this.quantile(0.95),
      p99: this.quantile(0.99),
      max: empty ? Number.NaN : this.max,
    };
  }

  toData(): HistogramData {
    const buckets: [number, number][] = [];
    this.counts.forEach((n, bucket) => {
      if (n > 0) buckets.push([bucket, n]);
    });
    return { buckets, count: this.count, sum: this.sum, min: this.min, max: this.max };
  }

  static from(data: HistogramData): Histogram {
    return new Histogram().merge(data);
  }
}
