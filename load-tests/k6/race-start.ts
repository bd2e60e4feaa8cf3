// Race start against a cluster: viewers ramp to N connections within RAMP_SECONDS (60 s), each with a
// real Directus token, subscribe to an event and watch. Fails the run on the SLO thresholds.
//
//   k6 run -e GATEWAY_URL=wss://live.example.com/live -e DIRECTUS_URL=https://cms.example.com \
//     -e EVENT_IDS=1,2,3 -e VIEWER_EMAIL='viewer-{n}@example.com' -e VIEWER_PASSWORD=... -e VIEWER_USERS=5000 \
//     -e VIEWERS=5000 load-tests/k6/race-start.ts
import { sleep } from 'k6';
import exec from 'k6/execution';
import type { Options } from 'k6/options';
import { SCENARIOS, eventForViewer, k6Options, scenarioDurationSeconds } from '../src/scenarios.ts';
import { raceStartFromEnv, targetFromEnv } from './lib/config.ts';
import { acquireSession, type ViewerSession } from './lib/directus.ts';
import { recordFailedStart, watch } from './lib/viewer.ts';

const scenario = raceStartFromEnv(SCENARIOS.raceStart);
const target = targetFromEnv();

export const options: Options = k6Options(scenario);

// Per VU (every VU has its own copy of module state): its Directus session, obtained once.
let session: ViewerSession | undefined;

export default async function viewer(): Promise<void> {
  const endMs = exec.scenario.startTime + scenarioDurationSeconds(scenario) * 1000;
  const returning = exec.vu.iterationInScenario > 0;
  // A session ended early (server closed it, snapshot timeout): back off before returning, as the map does.
  if (returning) sleep(1 + Math.random() * 2);
  if (Date.now() > endMs - 1000) {
    sleep(Math.max(0, (endMs - Date.now()) / 1000));
    return;
  }
  try {
    session ??= acquireSession(target.directusUrl, exec.vu.idInTest);
  } catch {
    recordFailedStart(returning ? 'reconnect' : 'initial');
    return;
  }
  await watch({
    gatewayUrl: target.gatewayUrl,
    accessToken: session.accessToken,
    eventId: eventForViewer(exec.vu.idInTest - 1, target.eventIds),
    phase: returning ? 'reconnect' : 'initial',
    untilMs: endMs,
    snapshotTimeoutMs: scenario.snapshotTimeoutSeconds * 1000,
  });
}
