import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresServer } from '@pitwall/testkit';
import { login } from '../directus/auth.js';
import { runDirectusCli } from '../directus/cli.js';
import { ensureDirectusInstalled } from '../directus/install.js';
import { DirectusRest } from '../directus/rest.js';
import { launchDirectus } from '../directus/server.js';
import { DIRECTUS_ADMIN_EMAIL, DIRECTUS_ADMIN_PASSWORD, SNAPSHOT_FILE } from '../directus/template.js';
import { COLLECTIONS, RELATIONS } from './collections.js';

// Regenerates schema/snapshot.yaml: a fresh Directus on a throwaway PostgreSQL, the collections
// created over REST, then `directus schema snapshot`. Run it only when the collections change.

const postgres = await PostgresServer.start();
const dataDir = mkdtempSync(join(tmpdir(), 'pitwall-snapshot-'));
try {
  const installation = await ensureDirectusInstalled({ onLog: (line) => process.stderr.write(`${line}\n`) });
  const database = 'directus_snapshot';
  const url = await postgres.createDatabase(database);
  const target = { databaseUrl: url, dataDir, adminEmail: DIRECTUS_ADMIN_EMAIL, adminPassword: DIRECTUS_ADMIN_PASSWORD };
  await runDirectusCli(installation, target, ['bootstrap']);
  const directus = await launchDirectus(installation, { postgresAdminUrl: postgres.url(), database, dataDir }, false);
  try {
    const session = await login(directus.url, DIRECTUS_ADMIN_EMAIL, DIRECTUS_ADMIN_PASSWORD);
    const rest = new DirectusRest(directus.url, session.accessToken);
    for (const collection of COLLECTIONS) await rest.post('/collections', collection);
    for (const relation of RELATIONS) await rest.post('/relations', relation);
  } finally {
    await directus.stop();
  }
  await runDirectusCli(installation, target, ['schema', 'snapshot', '--yes', '--format', 'yaml', SNAPSHOT_FILE]);
  process.stderr.write(`wrote ${SNAPSHOT_FILE}\n`);
} finally {
  await postgres.destroy();
  rmSync(dataDir, { recursive: true, force: true });
}
