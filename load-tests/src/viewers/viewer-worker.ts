import { setMaxListeners } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ViewerStats } from '../stats/viewer-stats.js';
import type { ParentMessage, WorkerMessage } from './plan.js';
import { runViewer } from './run-viewer.js';

// A viewer worker process (forked by ViewerFleet): runs its share of the viewers on its own event
// loop, so that thousands of clients are spread over the machine's cores.

const stats = new ViewerStats();
const stop = new AbortController();
// Every viewer listens for the stop.
setMaxListeners(0, stop.signal);
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
let finishedViewers = 0;

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
    case 'report':
      report();
      return;
    case 'stop':
      stop.abort();
      return;
  }
});

// The parent went away: nothing left to report to.
process.on('disconnect', () => {
  stop.abort();
  setTimeout(() => process.exit(0), 1000).unref();
});
