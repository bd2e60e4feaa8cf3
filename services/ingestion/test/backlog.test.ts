import { describe, expect, it } from 'vitest';
import { parseConfig } from '@pitwall/platform';
import { ingestionConfigProblems, ingestionEnv } from '../src/config.js';

// The backlog itself (lag + pending, its fallbacks) is measured by @pitwall/streams (shardBacklog, tested there).
describe('ingestionEnv', () => {
  it('has the contract defaults', () => {
    const config = parseConfig(ingestionEnv, {});
    expect(config.STREAM_MAXLEN).toBe(1_000_000);
    expect(config.INGESTION_MIN_REPLICAS).toBe(0);
    expect(config.REDIS_CLUSTER_NODES).toEqual({ nodes: [], tls: false });
    expect(config.INGESTION_TCP_PORT).toBe(5027);
    expect(config.INGESTION_UDP_PORT).toBe(5027);
    expect(config.METRICS_PORT).toBe(9464);
    expect(config.INGESTION_IMEI_ALLOWLIST).toEqual([]);
    expect(ingestionConfigProblems(config)).toEqual([]);
  });

  it('names bad variables', () => {
    expect(() => parseConfig(ingestionEnv, { REDIS_URL: 'http://x', INGESTION_BACKPRESSURE_HIGH: '2' })).toThrow(
      /REDIS_URL.*INGESTION_BACKPRESSURE_HIGH|INGESTION_BACKPRESSURE_HIGH.*REDIS_URL/,
    );
    const config = parseConfig(ingestionEnv, { INGESTION_BACKPRESSURE_HIGH: '0.5', INGESTION_BACKPRESSURE_LOW: '0.7' });
    expect(ingestionConfigProblems(config)).toEqual([['INGESTION_BACKPRESSURE_LOW', 'must be below INGESTION_BACKPRESSURE_HIGH']]);
    const replicated = parseConfig(ingestionEnv, { INGESTION_MIN_REPLICAS: '1', INGESTION_REPLICA_TIMEOUT_MS: '5000' });
    expect(ingestionConfigProblems(replicated)).toEqual([['INGESTION_REPLICA_TIMEOUT_MS', 'must be below INGESTION_REDIS_TIMEOUT_MS']]);
    expect(() => parseConfig(ingestionEnv, { INGESTION_MIN_REPLICAS: '-1' })).toThrow(/INGESTION_MIN_REPLICAS/);
  });
});
