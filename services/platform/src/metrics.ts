import { collectDefaultMetrics, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Summary, Registry } from 'prom-client';

/** A registry per service with Node's process metrics; the service registers its own beside them. */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Buckets for latencies on the hot paths: 0.1 ms to 10 s. */
export const LATENCY_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
