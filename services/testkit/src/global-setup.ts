import type { TestProject } from 'vitest/node';
import { PostgresServer } from './postgres-server.js';
import { RedisServer } from './redis-server.js';

/**
 * Vitest global setup of the integration projects: one throwaway redis-server and one PostgreSQL
 * cluster on free ports for the whole run, torn down at the end. Tests that stop or kill a server
 * start their own with RedisServer.start() / PostgresServer.start().
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [redis, postgres] = await Promise.all([RedisServer.start(), PostgresServer.start()]);
  project.provide('redisUrl', redis.url);
  project.provide('postgresUrl', postgres.url());
  return async () => {
    await Promise.all([redis.destroy(), postgres.destroy()]);
  };
}
