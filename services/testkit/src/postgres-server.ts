import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ensureBinaries } from './binaries.js';
import { ManagedProcess } from './managed-process.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

// A throwaway PostgreSQL cluster on a free port. initdb runs once per machine and version into a
// template directory; each server copies it (far faster than initdb). initdb and postgres refuse to
// run as root, so when the tests run as root they run as the `postgres` user.

interface RunAs {
  uid: number;
  gid: number;
}

function runAs(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      'running as root, but there is no `postgres` user to run initdb and postgres as (apt-get install postgresql creates it)',
    );
  }
}

function chownTree(path: string, owner: RunAs | undefined): void {
  if (owner) execFileSync('chown', ['-R', `${owner.uid}:${owner.gid}`, path]);
}

function templateDir(postgresBin: string, owner: RunAs | undefined): string {
  const version = execFileSync(join(postgresBin, 'postgres'), ['--version'], { encoding: 'utf8' }).replace(/\D+/g, '-');
  const root = join(tmpdir(), 'pitwall-pg-template');
  const dir = join(root, `pg${version}`);
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  mkdirSync(root, { recursive: true });
  chmodSync(root, 0o755);
  const staging = mkdtempSync(join(root, 'initdb-'));
  chownTree(staging, owner);
  execFileSync(
    join(postgresBin, 'initdb'),
    ['-D', join(staging, 'data'), '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'],
    { stdio: 'pipe', uid: owner?.uid, gid: owner?.gid },
  );
  try {
    renameSync(join(staging, 'data'), dir);
  } catch {
    // another run won the race; its template is as good as ours
  }
  rmSync(staging, { recursive: true, force: true });
  return dir;
}

export class PostgresServer {
  private proc: ManagedProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dataDir: string,
    private readonly owner: RunAs | undefined,
    private readonly postgresBin: string,
    private readonly settings: Readonly<Record<string, string>>,
  ) {}

  /** PID of the postmaster while it runs (for CPU pinning and profiling in benchmarks). */
  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  /**
   * `durable: true` runs with production durability (fsync, synchronous commit, full page writes),
   * for benchmarks; tests default to fsync off: they crash processes, not machines. `settings` adds
   * or overrides `-c name=value` server settings.
   */
  static async start(options: { port?: number; durable?: boolean; settings?: Record<string, string> } = {}): Promise<PostgresServer> {
    const { postgresBin } = ensureBinaries();
    const owner = runAs();
    const template = templateDir(postgresBin, owner);
    const root = mkdtempSync(join(tmpdir(), 'pitwall-pg-'));
    chmodSync(root, 0o755);
    const dataDir = join(root, 'data');
    cpSync(template, dataDir, { recursive: true });
    chownTree(root, owner);
    if (owner) chownSync(root, owner.uid, owner.gid);
    chmodSync(dataDir, 0o700);
    const durability: Record<string, string> = options.durable
      ? { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' }
      : // Tests crash processes, not machines: skipping fsync keeps them fast without losing commits.
        { fsync: 'off', full_page_writes: 'off' };
    const settings = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dataDir,
      max_connections: '300',
      shared_buffers: '128MB',
      log_min_messages: 'warning',
      ...durability,
      ...options.settings,
    };
    const server = new PostgresServer(options.port ?? (await freePort()), dataDir, owner, postgresBin, settings);
    await server.restart();
    return server;
  }

  /** URL of a database on this server (default: the `postgres` maintenance database). */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  async restart(): Promise<void> {
    if (this.proc?.running) throw new Error('postgres is already running');
    this.proc = new ManagedProcess(
      join(this.postgresBin, 'postgres'),
      [
        '-D',
        this.dataDir,
        '-p',
        String(this.port),
        ...Object.entries(this.settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
      ],
      { name: `postgres:${this.port}`, uid: this.owner?.uid, gid: this.owner?.gid },
    );
    await waitFor(
      `postgres on port ${this.port}`,
      async () => {
        if (!this.proc?.running) throw new Error(`postgres exited: ${this.proc?.output()}`);
        return this.canConnect();
      },
      { timeoutMs: 20_000 },
    );
  }

  /** Fast shutdown (SIGINT): active transactions roll back, the server exits cleanly. */
  async stop(): Promise<void> {
    await this.proc?.stop('SIGINT', 20_000);
  }

  /** Crash (SIGKILL to postmaster and every backend). */
  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(join(this.dataDir, '..'), { recursive: true, force: true });
  }

  /** Creates a fresh database (optionally from a template database) and returns its URL. */
  async createDatabase(name: string, template?: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`unsafe database name ${name}`);
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  private async canConnect(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url(), connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
