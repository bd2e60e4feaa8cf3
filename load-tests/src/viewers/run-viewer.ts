import { setTimeout as sleep } from 'node:timers/promises';
import { refreshViewer } from '../directus/directus-auth.js';
import type { ViewerStats } from '../stats/viewer-stats.js';
import type { FleetOptions, ViewerPlan } from './plan.js';
import type { TokenRefresher } from '../protocol.js';
import { startViewerSession, type RunningSession } from './viewer-session.js';

// One viewer over the whole run, as the k6 scripts drive a VU: connect at its moment; in a storm,
// drop and return; after a session that failed, back off 1-3 s and return (phase reconnect).

function untilTime(ms: number, signal: AbortSignal): Promise<void> {
  const wait = ms - Date.now();
  return wait > 0 ? sleep(wait, undefined, { signal }).catch(() => undefined) : Promise.resolve();
}

export async function runViewer(plan: ViewerPlan, options: FleetOptions, stats: ViewerStats, signal: AbortSignal): Promise<void> {
  let accessToken = plan.accessToken;
  let refreshToken = plan.refreshToken;
  let current: RunningSession | undefined;
  const onAbort = (): void => current?.drop();
  signal.addEventListener('abort', onAbort);

  const refresh = options.refresh;
  const refresher: TokenRefresher | undefined =
    refresh && refreshToken !== undefined
      ? {
          leadSeconds: refresh.leadSeconds,
          renew: async () => {
            const session = await refreshViewer(refresh.directusUrl, refreshToken ?? '');
            accessToken = session.accessToken;
            refreshToken = session.refreshToken;
            return accessToken;
          },
        }
      : undefined;

  const session = async (phase: 'initial' | 'reconnect', untilMs: number): Promise<boolean> => {
    current = startViewerSession(
      {
        gatewayUrl: options.gatewayUrl,
        accessToken,
        eventId: plan.eventId,
        phase,
        untilMs,
        snapshotTimeoutMs: options.snapshotTimeoutMs,
        parseEvery: options.parseEvery,
        refresher,
      },
      stats,
    );
    const outcome = await current.done;
    current = undefined;
    return !outcome.failed;
  };

  try {
    await untilTime(plan.connectAtMs, signal);
    let returning = false;
    if (plan.dropAtMs !== undefined && !signal.aborted && Date.now() < plan.dropAtMs) {
      await session('initial', plan.dropAtMs);
      await untilTime(plan.returnAtMs ?? plan.dropAtMs, signal);
      returning = true;
    }
    while (!signal.aborted && Date.now() < plan.untilMs - 1000) {
      if (await session(returning ? 'reconnect' : 'initial', plan.untilMs)) break;
      returning = true;
      await sleep(1000 + Math.random() * 2000, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
