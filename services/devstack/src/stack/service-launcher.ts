import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ManagedProcess, REPO_ROOT, waitFor } from '@pitwall/testkit';

export type PipelineService = 'ingestion' | 'writer' | 'live-gateway';

export interface ServiceSpec {
  /** Name in logs and messages (e.g. live-gateway-2). */
  label: string;
  env: Record<string, string>;
  metricsPort: number;
  logFile: string;
  /** Time allowed to become ready. Default 30 s. */
  readyTimeoutMs?: number;
}

/**
 * One built service (`node services/<name>/dist/main.js`, exactly what `npm start` runs), configured
 * only by environment variables, that can be stopped, crashed and started again with the same
 * ports: the unit the failure tests kill and `make up` runs.
 */
export class ServiceHandle {
  private proc: ManagedProcess | undefined;

  constructor(
    readonly service: PipelineService,
    readonly spec: ServiceSpec,
  ) {}

  get label(): string {
    return this.spec.label;
  }

  /** Base URL of its /metrics, /healthz and /readyz. */
  get metricsUrl(): string {
    return `http://127.0.0.1:${this.spec.metricsPort}`;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  get process(): ManagedProcess | undefined {
    return this.proc;
  }

  output(lines = 60): string {
    return this.proc?.output(lines) ?? '';
  }

  /** Starts it (again) and waits for /readyz, unless `waitReady` is false. */
  async start({ waitReady = true }: { waitReady?: boolean } = {}): Promise<void> {
    if (this.proc?.running) throw new Error(`${this.label} is already running`);
    const entry = join(REPO_ROOT, 'services', this.service, 'dist', 'main.js');
    if (!existsSync(entry)) throw new Error(`${entry} is missing: build first (make up builds; or npm run build)`);
    const proc = new ManagedProcess(process.execPath, [entry], {
      name: this.label,
      cwd: join(REPO_ROOT, 'services', this.service),
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        LOG_LEVEL: 'info',
        ...this.spec.env,
        METRICS_PORT: String(this.spec.metricsPort),
      },
      logFile: this.spec.logFile,
    });
    this.proc = proc;
    if (!waitReady) return;
    try {
      await this.waitReady();
    } catch (err) {
      await proc.kill();
      throw err;
    }
  }

  async waitReady(timeoutMs = this.spec.readyTimeoutMs ?? 30_000): Promise<void> {
    const proc = this.proc;
    if (!proc) throw new Error(`${this.label} was never started`);
    // Fail at once when the process dies instead of polling until the timeout.
    const exited = proc.exited.then((info) => {
      throw new Error(`${this.label} exited (${JSON.stringify(info)}) before it was ready:\n${proc.output(40)}`);
    });
    exited.catch(() => undefined);
    await Promise.race([
      exited,
      waitFor(
        `${this.label} /readyz`,
        async () => {
          const res = await fetch(`${this.metricsUrl}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
          await res?.body?.cancel();
          return res?.status === 200;
        },
        { timeoutMs, intervalMs: 100 },
      ),
    ]);
  }

  /** Graceful stop (SIGTERM, as Kubernetes sends it); SIGKILL after 25 s. */
  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM', 25_000);
  }

  /** Crash: SIGKILL, nothing flushed. */
  async kill(): Promise<void> {
    await this.proc?.kill();
  }
}
