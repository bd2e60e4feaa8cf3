import { LiveClient, type SocketLike } from '@pitwall/live-client';
import WebSocket from 'ws';
import type { ResumeFleetOptions, ResumeProgress, ResumeViewerPlan, ResumeViewerResult } from './plan.js';

// A worker's share of the reconnect storm's viewers: one @pitwall/live-client each (heartbeat off, as
// the storm lasts seconds), timed from the creation of each socket to the `subscribed` it got.

interface ResumeViewer {
  readonly client: LiveClient;
  readonly result: ResumeViewerResult;
}

export class ResumeViewers {
  private readonly viewers: ResumeViewer[] = [];
  readonly errors: Record<string, number> = {};

  constructor(options: ResumeFleetOptions, plans: readonly ResumeViewerPlan[]) {
    for (const plan of plans) {
      const result: ResumeViewerResult = { id: plan.id, resumes: 0 };
      /** When the viewer's current socket was created (performance.now()). */
      let connectStartedAt = 0;
      const client = new LiveClient({
        url: options.urls,
        token: () => options.accessToken,
        socket: (url) => {
          connectStartedAt = performance.now();
          // ws's handler properties take its own event classes; the client reads only `data`, `code` and `reason`.
          return new WebSocket(url) as unknown as SocketLike;
        },
        heartbeatMs: 0,
      });
      client.on('subscribed', ({ recovered }) => {
        const tookMs = performance.now() - connectStartedAt;
        if (result.firstSubscribedMs === undefined) {
          result.firstSubscribedMs = tookMs;
          return;
        }
        if (result.resumes++ > 0) return;
        result.resumedMs = tookMs;
        result.recovered = recovered === true;
      });
      client.on('error', ({ code }) => {
        this.errors[code] = (this.errors[code] ?? 0) + 1;
      });
      client.subscribe(plan.eventId);
      this.viewers.push({ client, result });
      client.start();
    }
  }

  progress(): ResumeProgress {
    let firstSubscribed = 0;
    let resumed = 0;
    for (const { result } of this.viewers) {
      if (result.firstSubscribedMs !== undefined) firstSubscribed++;
      if (result.resumes > 0) resumed++;
    }
    return { firstSubscribed, resumed };
  }

  results(): ResumeViewerResult[] {
    return this.viewers.map(({ result }) => ({ ...result }));
  }

  close(): void {
    for (const { client } of this.viewers) client.close();
  }
}
