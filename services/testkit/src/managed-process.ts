import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

// A real child process under test control. It runs in its own process group so that kill() takes
// its children with it (a SIGKILLed postmaster must not leave backends behind), and every process
// still running when the test process exits is killed.

const live = new Set<ManagedProcess>();
process.once('exit', () => {
  for (const proc of live) proc.signalGroup('SIGKILL');
});

export interface SpawnOptions {
  name: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
  /** Also append every output line to this file (kept as a test artifact). */
  logFile?: string;
  /** Lines of output kept in memory for waitForLine and error messages. */
  keepLines?: number;
}

export class ManagedProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private readonly keepLines: number;
  private readonly log: WriteStream | undefined;
  private readonly waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly options: SpawnOptions,
  ) {
    this.keepLines = options.keepLines ?? 2000;
    this.log = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : undefined;
    this.child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        resolve(this.exitInfo);
      });
      this.child.once('error', (err) => {
        this.onLine(`[spawn error] ${err.message}`);
        this.exitInfo = { code: -1, signal: null };
        live.delete(this);
        resolve(this.exitInfo);
      });
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) this.onLine(line);
      });
      stream?.on('end', () => {
        if (partial) this.onLine(partial);
        partial = '';
      });
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  get exitCode(): number | null | undefined {
    return this.exitInfo?.code;
  }

  /** Output so far, for assertion messages. */
  output(lastLines = 80): string {
    return this.lines.slice(-lastLines).join('\n');
  }

  /** Resolves with the first line (already seen or future) that matches. */
  waitForLine(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        pattern,
        resolve: (line: string) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.options.name}: no line matching ${pattern} within ${timeoutMs} ms. Output:\n${this.output()}`));
      }, timeoutMs);
      this.waiters.add(waiter);
      void this.exited.then(() => {
        if (!this.waiters.has(waiter)) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        reject(
          new Error(`${this.options.name} exited (${JSON.stringify(this.exitInfo)}) before printing ${pattern}. Output:\n${this.output()}`),
        );
      });
    });
  }

  /** Sends a signal to the whole process group. */
  signalGroup(signal: NodeJS.Signals): void {
    if (!this.running || this.pid <= 0) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** Sends a signal to the process itself (not its group): how Kubernetes' SIGTERM reaches PID 1. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** SIGKILL to the whole group: a crash, nothing is flushed. */
  async kill(): Promise<void> {
    this.signalGroup('SIGKILL');
    await this.exited;
  }

  /** Graceful stop: `signal`, then SIGKILL after `timeoutMs`. Resolves with the exit information. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exitInfo ?? { code: null, signal: null };
    this.signal(signal);
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), timeoutMs);
    const info = await this.exited;
    clearTimeout(timer);
    this.signalGroup('SIGKILL'); // stray grandchildren
    this.log?.end();
    return info;
  }

  private onLine(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.keepLines) this.lines.splice(0, this.lines.length - this.keepLines);
    this.log?.write(`${line}\n`);
    for (const waiter of [...this.waiters]) if (waiter.pattern.test(line)) waiter.resolve(line);
  }
}
