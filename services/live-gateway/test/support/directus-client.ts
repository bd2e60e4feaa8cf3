import { createLogger, createMetricsRegistry } from '@pitwall/platform';
import { DirectusClient } from '../../src/directus/directus-client.js';
import { createGatewayMetrics, type GatewayMetrics } from '../../src/metrics.js';
import { ConcurrencyLimiter } from '../../src/util/limiter.js';

/** A DirectusClient as the gateway builds one (its own limiter and metrics), for tests of the parts. */
export function testDirectusClient(
  url: string,
  {
    timeoutMs = 1_000,
    concurrency = 8,
    metrics = createGatewayMetrics(createMetricsRegistry()),
  }: { timeoutMs?: number; concurrency?: number; metrics?: GatewayMetrics } = {},
): DirectusClient {
  return new DirectusClient(url, timeoutMs, new ConcurrencyLimiter(concurrency, 1_000, 10_000), metrics, createLogger('test', 'silent'));
}
