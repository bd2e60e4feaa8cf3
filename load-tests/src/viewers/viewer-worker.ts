import { setMaxListeners } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ViewerStats } from '../stats/viewer-stats.js';
import type { ParentMessage, WorkerMessage } from './plan.js';
import { ResumeViewers } from './resume-viewers.js';
import { runViewer } from './run-viewer.js';

// A viewer worker process (forked by ViewerFleet): runs its share of the viewers on its own event
// loop, so that thousands of clients are spread over the machine's cores. Either scheduled viewer
// sessions (`run`) or resume viewers on @pitwall/live-client that stay until stopped (`run-resume`).

const stats = new ViewerStats();
const stop = new AbortController();
// Every viewer listens for the stop.
setMaxListeners(0, stop.signal);
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
let finishedViewers = 0;
let resumeViewers: ResumeViewers | undefined;

function send(message: WorkerMessage): void {
  process.send?.(message);
}

function report(): void {
  loopDelay.disable();
  stats.eventLoopDelayP99Ms = loopDelay.percentile(99) / 1e6;
  stats.eventLoopDelayMaxMs = loopDelay.max / 1e6;
  loopDelay.enable();
  send({ type: 'stats', stats: stats.toData(), finishedViewers });
}

process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'run': {
      loopDelay.enable();
      const runs = message.viewers.map((plan) =>
        runViewer(plan, message.options, stats, stop.signal).finally(() => {
          finishedViewers++;
        }),
      );
      void Promise.allSettled(runs).then(() => send({ type: 'finished' }));
      return;
    }
    case 'run-resume':
      loopDelay.enable();
      resumeViewers = new ResumeViewers(message.options, message.viewers);
      return;
    case 'report':
      report();
      return;
    case 'resume-report': {
      // Before run-resume: no viewers yet, only the worker's CPU so far (the start of a window).
      const viewers = resumeViewers;
      const cpu = process.cpuUsage();
      send({
        type: 'resume-stats',
        progress: viewers?.progress() ?? { firstSubscribed: 0, resumed: 0 },
        load: {
          loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
          loopDelayMaxMs: loopDelay.max / 1e6,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
        },
        errors: { ...viewers?.errors },
        viewers: message.withViewers ? viewers?.results() : undefined,
      });
      if (message.restartLoopDelay) loopDelay.reset();
      return;
    }
    case 'stop':
      stop.abort();
      if (resumeViewers) {
        resumeViewers.close();
        send({ type: 'finished' });
      }
      return;
  }
});

// The parent went away: nothing left to report to.
process.on('disconnect', () => {
  stop.abort();
  setTimeout(() => process.exit(0), 1000).unref();
});
