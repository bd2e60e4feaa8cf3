import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { PostgresServer, REPO_ROOT } from '@pitwall/testkit';
import { startDirectus } from '../directus/server.js';
import { seedDirectus } from '../seed/seed.js';
import './shared-directus.js';

/**
 * Vitest global setup of the e2e project, listed after testkit's (whose PostgreSQL it reuses):
 * installs Directus when the machine has never had it (minutes, once, cached outside the clone),
 * then starts ONE seeded Directus for the whole run and provides directusUrl, directusSecret and
 * directusSeed. Tests that stop or restart Directus start their own with startDirectus.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const provided = project.getProvidedContext();
  const ownPostgres = provided.postgresUrl ? undefined : await PostgresServer.start();
  const postgresAdminUrl = provided.postgresUrl ?? ownPostgres?.url() ?? '';
  const logDir = join(REPO_ROOT, 'test-results', 'e2e');
  mkdirSync(logDir, { recursive: true });
  const directus = await startDirectus({
    postgresAdminUrl,
    logFile: join(logDir, 'directus-shared.log'),
    // Realtime on, as in `make up`: the live map follows its event's entries through it.
    env: { WEBSOCKETS_ENABLED: 'true' },
    onInstallLog: (line) => process.stderr.write(`${line}\n`),
  });
  try {
    const seed = await seedDirectus(directus);
    project.provide('directusUrl', directus.url);
    project.provide('directusSecret', directus.secret);
    project.provide('directusSeed', seed);
  } catch (err) {
    await directus.destroy();
    await ownPostgres?.destroy();
    throw err;
  }
  return async () => {
    await directus.destroy();
    await ownPostgres?.destroy();
  };
}
