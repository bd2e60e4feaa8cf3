import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ViewerStats } from '../stats/viewer-stats.js';
import type { FleetOptions, ParentMessage, ViewerPlan, WorkerMessage } from './plan.js';

// Viewers spread over a few worker processes (each its own event loop and core), driven from here.
// The workers always run from the build (load-tests/dist), also when this module runs from source.

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VIEWER_WORKER_ENTRY = join(PACKAGE_ROOT, 'dist', 'viewers', 'viewer-worker.js');

/**
 * The parent's Node flags without its export conditions: a test runner resolving workspace packages to
 * their TypeScript sources (`--conditions @pitwall/source`) would otherwise hand that to the worker,
 * which runs from the build and imports workspace packages (@pitwall/live-protocol) as built.
 */
export function buildExecArgv(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] ?? '';
    if (arg === '--conditions' || arg === '-C') i++;
    else if (!arg.startsWith('--conditions=') && !arg.startsWith('-C=')) kept.push(arg);
  }
  return kept;
}

interface Worker {
  child: ChildProcess;
  finished: Promise<void>;
  exited: Promise<void>;
  pendingReport: ((message: Extract<WorkerMessage, { type: 'stats' }>) => void)[];
}

export class ViewerFleet {
  private constructor(private readonly workers: Worker[]) {}

  /** Forks `count` worker processes (default: one per core). */
  static start(count = Math.max(1, cpus().length)): ViewerFleet {
    if (!existsSync(VIEWER_WORKER_ENTRY)) throw new Error(`${VIEWER_WORKER_ENTRY} is missing: build first (npx tsc --build load-tests)`);
    const workers = Array.from({ length: count }, (): Worker => {
      const child = fork(VIEWER_WORKER_ENTRY, [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        serialization: 'json',
        execArgv: buildExecArgv(process.execArgv),
      });
      const pendingReport: Worker['pendingReport'] = [];
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const finished = new Promise<void>((resolve) => {
        child.on('message', (message: WorkerMessage) => {
          if (message.type === 'finished') resolve();
          else pendingReport.shift()?.(message);
        });
        void exited.then(() => resolve());
      });
      return { child, finished, exited, pendingReport };
    });
    return new ViewerFleet(workers);
  }

  get size(): number {
    return this.workers.length;
  }

  /** Hands the viewers out round-robin (each worker gets a share of every part of the ramp) and runs them. */
  run(options: FleetOptions, viewers: readonly ViewerPlan[]): Promise<void> {
    this.workers.forEach((worker, w) => {
      const share = viewers.filter((_, i) => i % this.workers.length === w);
      this.send(worker, { type: 'run', options, viewers: share });
    });
    return Promise.all(this.workers.map((w) => w.finished)).then(() => undefined);
  }

  /** Everything measured so far, merged over the workers; `finishedViewers` counts viewers done for good. */
  async report(): Promise<{ stats: ViewerStats; finishedViewers: number }> {
    const replies = await Promise.all(
      this.workers.map(
        (worker) =>
          new Promise<Extract<WorkerMessage, { type: 'stats' }> | undefined>((resolve) => {
            if (!worker.child.connected) return resolve(undefined);
            worker.pendingReport.push(resolve);
            void worker.exited.then(() => resolve(undefined));
            this.send(worker, { type: 'report' });
          }),
      ),
    );
    const stats = new ViewerStats();
    let finishedViewers = 0;
    for (const reply of replies) {
      if (!reply) continue;
      stats.merge(reply.stats);
      finishedViewers += reply.finishedViewers;
    }
    return { stats, finishedViewers };
  }

  /** Drops every viewer still connected and ends the worker processes. */
  async stop(): Promise<void> {
    for (const worker of this.workers) this.send(worker, { type: 'stop' });
    await Promise.race([Promise.all(this.workers.map((w) => w.finished)), new Promise((r) => setTimeout(r, 5_000))]);
    for (const worker of this.workers) {
      if (worker.child.exitCode === null) worker.child.kill('SIGTERM');
    }
    await Promise.race([Promise.all(this.workers.map((w) => w.exited)), new Promise((r) => setTimeout(r, 5_000))]);
    for (const worker of this.workers) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
  }

  private send(worker: Worker, message: ParentMessage): void {
    if (worker.child.connected) worker.child.send(message);
  }
}
