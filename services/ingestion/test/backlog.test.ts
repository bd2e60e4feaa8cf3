import { describe, expect, it } from 'vitest';
import { measureBacklog } from '@pitwall/ingestion';
import { parseConfig } from '@pitwall/platform';
import { ingestionConfigProblems, ingestionEnv } from '../src/config.js';

const stream = (fields: Record<string, number>): [null, unknown] => [null, Object.entries(fields).flat()];
const groups = (...list: Record<string, string | number | null>[]): [null, unknown] => [null, list.map((g) => Object.entries(g).flat())];

describe('measureBacklog', () => {
  it('counts lag plus pending of the processor group', () => {
    const result = measureBacklog(
      groups(
        { name: 'live-broadcast-a', pending: 0, 'entries-read': 100, lag: 0 },
        { name: 'processor', pending: 7, 'entries-read': 80, lag: 20 },
      ),
      stream({ length: 100, 'entries-added': 100 }),
    );
    expect(result).toEqual({ backlog: 27, source: 'lag' });
  });

  it('falls back to entries-added - entries-read when lag is nil', () => {
    expect(
      measureBacklog(
        groups({ name: 'processor', pending: 1, 'entries-read': 40, lag: null }),
        stream({ length: 90, 'entries-added': 100 }),
      ),
    ).toEqual({ backlog: 61, source: 'entries-read' });
  });

  it('counts the whole stream when the group is missing or nothing is known', () => {
    expect(measureBacklog(groups(), stream({ length: 42, 'entries-added': 50 }))).toEqual({ backlog: 42, source: 'length' });
    expect(
      measureBacklog(groups({ name: 'processor', pending: 0, 'entries-read': null, lag: null }), stream({ length: 9, 'entries-added': 9 })),
    ).toEqual({ backlog: 9, source: 'length' });
  });

  it('treats a missing stream as empty and other errors as unknown', () => {
    expect(measureBacklog([new Error('ERR no such key'), null], [new Error('ERR no such key'), null])).toEqual({
      backlog: 0,
      source: 'empty',
    });
    expect(measureBacklog([new Error('LOADING'), null], stream({ length: 1 }))).toBeUndefined();
  });
});

describe('ingestionEnv', () => {
  it('has the contract defaults', () => {
    const config = parseConfig(ingestionEnv, {});
    expect(config.STREAM_MAXLEN).toBe(1_000_000);
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
  });
});
