import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, ManagedProcess, uniqueName, waitFor } from '@pitwall/testkit';
import { DirectusStartError } from '../errors/directus-start-error.js';
import { directusEnv, directusExtensionsPath } from './env.js';
import { eventsClaimExtensionFiles, installEventsClaimExtension } from './extensions.js';
import { ensureDirectusInstalled, type DirectusInstallation } from './install.js';
import {
  assertDatabaseName,
  databaseExists,
  databaseUrl,
  DIRECTUS_ADMIN_EMAIL,
  DIRECTUS_ADMIN_PASSWORD,
  ensureTemplateDatabase,
} from './template.js';

export interface DirectusInstance {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  /** SECRET its access tokens are signed with (HS256): what the gateway's DIRECTUS_SECRET must be. */
  secret: string;
  adminEmail: string;
  adminPassword: string;
  /** Graceful stop (SIGTERM). */
  stop(): Promise<void>;
  /** Crash (SIGKILL to its process group). */
  kill(): Promise<void>;
  /** Starts it again on the same port, database and secret, and waits until it is healthy. */
  restart(): Promise<void>;
  /** Kills it and drops its database and files. */
  destroy(): Promise<void>;
  readonly running: boolean;
}

export interface StartDirectusOptions {
  /** A superuser URL of the PostgreSQL server to keep Directus' database on (any database on it). */
  postgresAdminUrl: string;
  /** Its database; created from the template when missing, reused (data kept) when present. Default: a unique name. */
  database?: string;
  /** Default: a free port. */
  port?: number;
  /** Append Directus' output to this file. */
  logFile?: string;
  /** Default: random per instance. Fixed for the instance's life (restarts keep it). */
  secret?: string;
  /** Lifetime of access tokens, Directus syntax ('15m', '20s'). Default '15m'. */
  accessTokenTtl?: string;
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  /** Uploads and extensions folder. Default: a temporary folder removed by destroy(). */
  dataDir?: string;
  /** Further Directus environment variables (PITWALL_EVENTS_CLAIM_* configure the extension). */
  env?: Record<string, string>;
  /**
   * Load the business plane's extension (access tokens carry `pitwall_events`). Default true; false
   * runs Directus without it (the baseline of the login-cost bench).
   */
  eventsClaim?: boolean;
  /** Progress lines of the one-time install (it takes minutes). */
  onInstallLog?: (line: string) => void;
  /** Time allowed to become healthy. Default 90 s (a loaded 2-core machine). */
  startTimeoutMs?: number;
}

class DirectusServer implements DirectusInstance {
  readonly url: string;
  readonly adminEmail = DIRECTUS_ADMIN_EMAIL;
  readonly adminPassword = DIRECTUS_ADMIN_PASSWORD;
  private proc: ManagedProcess | undefined;

  constructor(
    private readonly installation: DirectusInstallation,
    readonly port: number,
    readonly secret: string,
    readonly database: string,
    private readonly postgresAdminUrl: string,
    private readonly env: Record<string, string>,
    private readonly dataDir: string,
    private readonly ownsDataDir: boolean,
    private readonly logFile: string | undefined,
    private readonly startTimeoutMs: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Recent output, for error messages. */
  output(lines = 60): string {
    return this.proc?.output(lines) ?? '';
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string> {
    if (!this.proc) return Promise.reject(new DirectusStartError(`Directus on port ${this.port} was never started`));
    return this.proc.waitForLine(pattern, timeoutMs);
  }

  async restart(): Promise<void> {
    if (this.proc?.running) throw new DirectusStartError(`Directus on port ${this.port} is already running`);
    const proc = new ManagedProcess(this.installation.node, [this.installation.cli, 'start'], {
      name: `directus:${this.port}`,
      env: this.env,
      cwd: this.dataDir,
      logFile: this.logFile,
    });
    this.proc = proc;
    // Give up at once when the process dies (a bad database, a port taken) instead of polling on.
    const exited = proc.exited.then((info) => {
      throw new DirectusStartError(`Directus exited (${JSON.stringify(info)}) while starting:\n${proc.output()}`);
    });
    exited.catch(() => undefined);
    try {
      await Promise.race([
        exited,
        waitFor(
          `Directus /server/health on port ${this.port}`,
          async () => {
            const res = await fetch(`${this.url}/server/health`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
            await res?.body?.cancel();
            return res?.status === 200;
          },
          { timeoutMs: this.startTimeoutMs, intervalMs: 150 },
        ),
      ]);
    } catch (err) {
      await proc.kill();
      throw new DirectusStartError(`Directus did not become healthy on port ${this.port}:\n${proc.output()}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM', 10_000);
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  async destroy(): Promise<void> {
    await this.kill();
    const client = new pg.Client({ connectionString: this.postgresAdminUrl });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
    } catch {
      // the server may be gone already (the test destroyed it first): nothing left to drop
    } finally {
      await client.end().catch(() => undefined);
    }
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export type StartedDirectus = DirectusInstance & {
  /** Its PostgreSQL database. */
  database: string;
  /** Its recent output, for assertion messages. */
  output(lines?: number): string;
  /** Resolves with the first output line (kept or to come) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Its process id while it runs (CPU accounting in benchmarks). */
  readonly pid: number | undefined;
};

/**
 * Starts a real Directus 11 (Node 22, its own process group) on a database cloned from the template
 * (bootstrapped, schema applied; no roles, users or items yet: seedDirectus adds them). Installs
 * Directus first when the machine has never had it.
 */
export async function startDirectus(options: StartDirectusOptions): Promise<StartedDirectus> {
  // Before anything is created: a missing build is the caller's to fix.
  if (options.eventsClaim ?? true) eventsClaimExtensionFiles();
  const installation = await ensureDirectusInstalled({ onLog: options.onInstallLog });
  const template = await ensureTemplateDatabase(installation, options.postgresAdminUrl);
  const database = options.database ?? uniqueName('directus').toLowerCase();
  assertDatabaseName(database);
  let created = false;
  if (!(await databaseExists(options.postgresAdminUrl, database))) {
    const client = new pg.Client({ connectionString: options.postgresAdminUrl });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${database} TEMPLATE ${template}`);
      created = true;
    } finally {
      await client.end();
    }
  }
  return launchDirectus(installation, { ...options, database }, created);
}

/** Runs Directus on an existing, bootstrapped database. */
export async function launchDirectus(
  installation: DirectusInstallation,
  options: StartDirectusOptions & { database: string },
  dropDatabaseOnFailure: boolean,
): Promise<StartedDirectus> {
  const port = options.port ?? (await freePort());
  const host = options.host ?? '127.0.0.1';
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'pitwall-directus-'));
  mkdirSync(dataDir, { recursive: true });
  const secret = options.secret ?? randomBytes(32).toString('hex');
  const extensionsPath = directusExtensionsPath(dataDir);
  mkdirSync(extensionsPath, { recursive: true });
  try {
    if (options.eventsClaim ?? true) installEventsClaimExtension(extensionsPath);
  } catch (err) {
    if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const env = directusEnv({
    installationDir: installation.directusDir,
    databaseUrl: databaseUrl(options.postgresAdminUrl, options.database),
    port,
    host,
    publicUrl: `http://127.0.0.1:${port}`,
    key: randomBytes(16).toString('hex'),
    secret,
    dataDir,
    accessTokenTtl: options.accessTokenTtl ?? '15m',
    extra: options.env,
  });
  const server = new DirectusServer(
    installation,
    port,
    secret,
    options.database,
    options.postgresAdminUrl,
    env,
    dataDir,
    ownsDataDir,
    options.logFile,
    options.startTimeoutMs ?? 90_000,
  );
  try {
    await server.restart();
  } catch (err) {
    if (dropDatabaseOnFailure) await server.destroy();
    else await server.kill();
    throw err;
  }
  return server;
}
