import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ensureBinaries } from './binaries.js';
import { ManagedProcess } from './managed-process.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

export interface RedisServerOptions {
  /**
   * Append-only file with fsync on every write, as production runs it. Needed wherever a test
   * restarts Redis and expects acknowledged records to survive. Default false (faster).
   */
  durable?: boolean;
  port?: number;
  /** More redis-server arguments (e.g. cluster mode). */
  extraArgs?: readonly string[];
}

/** A throwaway redis-server on a free port that a test may stop, kill and restart. */
export class RedisServer {
  private proc: ManagedProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly durable: boolean,
    private readonly extraArgs: readonly string[] = [],
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(
      options.port ?? (await freePort()),
      mkdtempSync(join(tmpdir(), 'pitwall-redis-')),
      options.durable ?? false,
      options.extraArgs,
    );
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** The redis-server process while it runs (for CPU pinning and accounting). */
  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  /** Starts it again on the same port and data directory (what a durable server kept is back). */
  async restart(): Promise<void> {
    if (this.proc?.running) throw new Error('redis-server is already running');
    const { redisServer } = ensureBinaries();
    const persistence = this.durable ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    this.proc = new ManagedProcess(
      redisServer,
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--save',
        '',
        ...persistence,
        '--logfile',
        '',
        ...this.extraArgs,
      ],
      { name: `redis:${this.port}` },
    );
    await waitFor(`redis-server on port ${this.port}`, async () => {
      if (!this.proc?.running) throw new Error(`redis-server exited: ${this.proc?.output()}`);
      return (await this.ping()) === 'PONG';
    });
  }

  /** Clean shutdown (SIGTERM). */
  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM');
  }

  /** Crash (SIGKILL): nothing is flushed beyond what fsync already wrote. */
  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  /** Stops it for good and removes its data. */
  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A new client; the caller quits it. */
  client(): Redis {
    return new Redis(this.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  }

  private async ping(): Promise<string | undefined> {
    const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await client.ping();
    } catch {
      return undefined;
    } finally {
      client.disconnect();
    }
  }
}
