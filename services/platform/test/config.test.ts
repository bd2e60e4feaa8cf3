import { describe, expect, it } from 'vitest';
import { commonEnv, ConfigError, instanceIdEnv, intVar, parseConfig, urlVar } from '@pitwall/platform';

describe('parseConfig', () => {
  it('applies the contract defaults', () => {
    const config = parseConfig({ ...commonEnv, ...instanceIdEnv }, {});
    expect(config).toMatchObject({
      REDIS_URL: 'redis://127.0.0.1:6379',
      STREAM_KEY: 'pitwall:positions',
      STREAM_SHARDS: 1,
      METRICS_PORT: 9464,
      LOG_LEVEL: 'info',
    });
    expect(config.INSTANCE_ID.length).toBeGreaterThan(0);
  });

  it('reads and converts what is set, treating empty strings as unset', () => {
    const config = parseConfig(commonEnv, { REDIS_URL: 'rediss://cache:6380/2', STREAM_SHARDS: '4', METRICS_PORT: '', LOG_LEVEL: 'debug' });
    expect(config.REDIS_URL).toBe('rediss://cache:6380/2');
    expect(config.STREAM_SHARDS).toBe(4);
    expect(config.METRICS_PORT).toBe(9464);
  });

  it('names every bad variable', () => {
    let error: unknown;
    try {
      parseConfig(commonEnv, { REDIS_URL: 'not a url', STREAM_SHARDS: 'zero', METRICS_PORT: '70000', LOG_LEVEL: 'loud' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const configError = error as ConfigError;
    expect(configError.code).toBe('CONFIG_INVALID');
    expect(configError.variables.sort()).toEqual(['LOG_LEVEL', 'METRICS_PORT', 'REDIS_URL', 'STREAM_SHARDS']);
    expect(configError.message).toMatch(/REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => parseConfig(commonEnv, { REDIS_URL: 'redis://cache:6379/positions' })).toThrow(
      /REDIS_URL: its path must be a database number, like \/0/,
    );
  });

  it('reports a required variable as required', () => {
    expect(() => parseConfig({ DIRECTUS_SERVICE_TOKEN: urlVar(['http']) }, {})).toThrow(/DIRECTUS_SERVICE_TOKEN: is required/);
  });

  it('bounds integers', () => {
    expect(() => parseConfig({ N: intVar(1, 1, 10) }, { N: '11' })).toThrow(/N: must be <= 10/);
    expect(() => parseConfig({ N: intVar(1, 1, 10) }, { N: '2.5' })).toThrow(/N: must be an integer/);
  });
});
