import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '@pitwall/platform';
import { writerEnv } from '@pitwall/writer';

describe('writerEnv', () => {
  it('applies the contract defaults and the writer defaults', () => {
    const config = parseConfig(writerEnv, {});
    expect(config).toMatchObject({
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/pitwall',
      REDIS_URL: 'redis://127.0.0.1:6379',
      STREAM_KEY: 'pitwall:positions',
      STREAM_SHARDS: 1,
      MIGRATE_ON_START: true,
      PARTITION_INTERVAL: 'day',
      RETENTION_DAYS: 0,
    });
    expect(config.WRITER_BATCH_SIZE).toBeGreaterThan(0);
  });

  it('names a malformed DATABASE_URL and bad knobs', () => {
    let error: unknown;
    try {
      parseConfig(writerEnv, {
        DATABASE_URL: 'mysql://db/pitwall',
        MIGRATE_ON_START: 'maybe',
        PARTITION_INTERVAL: 'hour',
        WRITER_BATCH_SIZE: '0',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variables.sort()).toEqual([
      'DATABASE_URL',
      'MIGRATE_ON_START',
      'PARTITION_INTERVAL',
      'WRITER_BATCH_SIZE',
    ]);
  });
});
