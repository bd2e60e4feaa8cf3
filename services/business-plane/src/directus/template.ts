import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { cacheRoot, ensureBinaries } from '@pitwall/testkit';
import { runDirectusCli } from './cli.js';
import type { DirectusInstallation } from './install.js';
import { PACKAGE_ROOT } from './install.js';

const run = promisify(execFile);

export const SNAPSHOT_FILE = join(PACKAGE_ROOT, 'schema', 'snapshot.yaml');

/** The administrator every instance starts with (written at bootstrap, so part of the template). */
export const DIRECTUS_ADMIN_EMAIL = 'admin@pitwall.example.com';
export const DIRECTUS_ADMIN_PASSWORD = 'pitwall-admin';

// Bump when what the template holds changes in a way the inputs below do not show.
const TEMPLATE_FORMAT = '1';

/** A database name that changes whenever the Directus version, the schema or the admin changes. */
export function templateName(installation: DirectusInstallation): string {
  const hash = createHash('sha256')
    .update([TEMPLATE_FORMAT, installation.version, DIRECTUS_ADMIN_EMAIL, DIRECTUS_ADMIN_PASSWORD].join('\n'))
    .update(readFileSync(SNAPSHOT_FILE))
    .digest('hex')
    .slice(0, 12);
  return `pitwall_directus_tpl_${hash}`;
}

export function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export function assertDatabaseName(name: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`unsafe database name ${JSON.stringify(name)}`);
}

async function withAdminClient<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function databaseExists(adminUrl: string, name: string): Promise<boolean> {
  return withAdminClient(adminUrl, async (client) => {
    const res = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return res.rowCount === 1;
  });
}

/**
 * Makes sure the PostgreSQL server at `adminUrl` holds a template database with Directus
 * bootstrapped and the committed schema applied, and returns its name. The slow part (bootstrap and
 * schema apply, ~15 s) runs once per machine: its result is cached as a SQL dump outside the clone
 * and restored into each new server in about a second. Concurrent callers are serialised by an
 * advisory lock on the server.
 */
export async function ensureTemplateDatabase(installation: DirectusInstallation, adminUrl: string): Promise<string> {
  const name = templateName(installation);
  const lockKey = BigInt.asIntN(64, BigInt(`0x${createHash('sha256').update(name).digest('hex').slice(0, 16)}`)).toString();
  return withAdminClient(adminUrl, async (client) => {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [lockKey]);
    try {
      const existing = await client.query<{ datistemplate: boolean }>('SELECT datistemplate FROM pg_database WHERE datname = $1', [name]);
      if (existing.rows[0]?.datistemplate) return name;
      if (existing.rows[0]) await client.query(`DROP DATABASE ${name} WITH (FORCE)`);
      const staging = `${name}_build`;
      await client.query(`DROP DATABASE IF EXISTS ${staging} WITH (FORCE)`);
      await client.query(`CREATE DATABASE ${staging}`);
      const stagingUrl = databaseUrl(adminUrl, staging);
      const dump = join(cacheRoot(), 'directus-templates', `${name}.sql`);
      if (existsSync(dump)) {
        await restoreDump(stagingUrl, dump);
      } else {
        await buildFromScratch(installation, stagingUrl);
        await saveDump(stagingUrl, dump);
      }
      await client.query(`ALTER DATABASE ${staging} RENAME TO ${name}`);
      await client.query(`ALTER DATABASE ${name} WITH IS_TEMPLATE true`);
      return name;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [lockKey]).catch(() => undefined);
    }
  });
}

async function buildFromScratch(installation: DirectusInstallation, url: string): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'pitwall-directus-build-'));
  try {
    const target = { databaseUrl: url, dataDir, adminEmail: DIRECTUS_ADMIN_EMAIL, adminPassword: DIRECTUS_ADMIN_PASSWORD };
    await runDirectusCli(installation, target, ['bootstrap']);
    await runDirectusCli(installation, target, ['schema', 'apply', '--yes', SNAPSHOT_FILE]);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function saveDump(url: string, file: string): Promise<void> {
  const { postgresBin } = ensureBinaries();
  mkdirSync(join(file, '..'), { recursive: true });
  const partial = `${file}.${process.pid}.partial`;
  await run(join(postgresBin, 'pg_dump'), ['--no-owner', '--no-privileges', '--format=plain', '--file', partial, url], {
    maxBuffer: 16 * 1024 * 1024,
  });
  renameSync(partial, file); // atomic: a reader never sees half a dump
}

async function restoreDump(url: string, file: string): Promise<void> {
  const { postgresBin } = ensureBinaries();
  await run(join(postgresBin, 'psql'), ['--quiet', '--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '--file', file, url], {
    maxBuffer: 16 * 1024 * 1024,
  });
}
