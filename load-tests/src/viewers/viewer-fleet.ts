import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ViewerStats } from '../stats/viewer-stats.js';
import type {
  FleetOptions,
  ParentMessage,
  ResumeFleetOptions,
  ResumeProgress,
  ResumeViewerPlan,
  ResumeViewerResult,
  ViewerPlan,
  WorkerLoad,
  WorkerMessage,
} from './plan.js';

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

type WorkerReply = Exclude<WorkerMessage, { type: 'finished' }>;

interface Worker {
  child: ChildProcess;
  finished: Promise<void>;
  exited: Promise<void>;
  /** Requests answered in order: each waits for the next reply (undefined: the worker is gone). */
  pendingReplies: ((message: WorkerReply | undefined) => void)[];
}

/** The resume viewers of every worker, merged. */
export interface ResumeFleetReport {
  progress: ResumeProgress;
  /** Per worker (a worker that is gone is left out). */
  loads: WorkerLoad[];
  errors: Record<string, number>;
  /** Every viewer's result (when asked for), in no particular order. */
  viewers: ResumeViewerResult[];
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
      const pendingReplies: Worker['pendingReplies'] = [];
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const finished = new Promise<void>((resolve) => {
        child.on('message', (message: WorkerMessage) => {
          if (message.type === 'finished') resolve();
          else pendingReplies.shift()?.(message);
        });
        void exited.then(() => resolve());
      });
      void exited.then(() => {
        for (const reply of pendingReplies.splice(0)) reply(undefined);
      });
      return { child, finished, exited, pendingReplies };
    });
    return new ViewerFleet(workers);
  }

  get size(): number {
    return this.workers.length;
  }

  /** Hands the viewers out round-robin (each worker gets a share of every part of the ramp) and runs them. */
  run(options: FleetOptions, viewers: readonly ViewerPlan[]): Promise<void> {
    this.workers.forEach((worker, w) => this.send(worker, { type: 'run', options, viewers: this.shareOf(viewers, w) }));
    return Promise.all(this.workers.map((w) => w.finished)).then(() => undefined);
  }

  /** Starts resume viewers (round-robin over the workers); they stay connected until stop(). */
  runResume(options: ResumeFleetOptions, viewers: readonly ResumeViewerPlan[]): void {
    this.workers.forEach((worker, w) => this.send(worker, { type: 'run-resume', options, viewers: this.shareOf(viewers, w) }));
  }

  /** Everything measured so far, merged over the workers; `finishedViewers` counts viewers done for good. */
  async report(): Promise<{ stats: ViewerStats; finishedViewers: number }> {
    const stats = new ViewerStats();
    let finishedViewers = 0;
    for (const reply of await this.request({ type: 'report' })) {
      if (reply?.type !== 'stats') continue;
      stats.merge(reply.stats);
      finishedViewers += reply.finishedViewers;
    }
    return { stats, finishedViewers };
  }

  /**
   * The resume viewers' counts and the workers' load (loop delay since the last `restartLoopDelay`),
   * with every viewer's result when `withViewers`.
   */
  async resumeReport(options: { withViewers?: boolean; restartLoopDelay?: boolean } = {}): Promise<ResumeFleetReport> {
    const report: ResumeFleetReport = { progress: { firstSubscribed: 0, resumed: 0 }, loads: [], errors: {}, viewers: [] };
    const replies = await this.request({
      type: 'resume-report',
      withViewers: options.withViewers ?? false,
      restartLoopDelay: options.restartLoopDelay ?? false,
    });
    for (const reply of replies) {
      if (reply?.type !== 'resume-stats') continue;
      report.progress.firstSubscribed += reply.progress.firstSubscribed;
      report.progress.resumed += reply.progress.resumed;
      report.loads.push(reply.load);
      for (const [code, n] of Object.entries(reply.errors)) report.errors[code] = (report.errors[code] ?? 0) + n;
      report.viewers.push(...(reply.viewers ?? []));
    }
    return report;
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

  private shareOf<T>(viewers: readonly T[], worker: number): T[] {
    return viewers.filter((_, i) => i % this.workers.length === worker);
  }

  /** Sends `message` to every worker and waits for each one's reply. */
  private request(message: ParentMessage): Promise<(WorkerReply | undefined)[]> {
    return Promise.all(
      this.workers.map(
        (worker) =>
          new Promise<WorkerReply | undefined>((resolve) => {
            if (!worker.child.connected || worker.child.exitCode !== null) return resolve(undefined);
            worker.pendingReplies.push(resolve);
            this.send(worker, message);
          }),
      ),
    );
  }

  private send(worker: Worker, message: ParentMessage): void {
    if (worker.child.connected) worker.child.send(message);
  }
}
