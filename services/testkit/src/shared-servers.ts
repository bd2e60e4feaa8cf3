import pg from 'pg';
import { inject } from 'vitest';
import { uniqueName } from './names.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's shared throwaway redis-server (never stopped by a test: start your own for that). */
    redisUrl: string;
    /** The run's shared throwaway PostgreSQL, `postgres` database (superuser, trust auth). */
    postgresUrl: string;
  }
}

/** URL of the run's shared Redis. Isolate by key: use uniqueName() for stream keys. */
export function sharedRedisUrl(): string {
  return inject('redisUrl');
}

/** A fresh, empty database on the run's shared PostgreSQL; returns its URL. */
export async function createTestDatabase(prefix = 'test'): Promise<string> {
  const adminUrl = inject('postgresUrl');
  const name = uniqueName(prefix).toLowerCase();
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
