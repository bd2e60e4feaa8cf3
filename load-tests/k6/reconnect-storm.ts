// Reconnect storm against a cluster: viewers ramp to N, settle, then every viewer drops its connection
// at the same moment and returns within RECONNECT_WINDOW_SECONDS (10 s), as after a network blip or a
// gateway pod going away. Thresholds on the returning viewers carry the tag phase=reconnect.
//
//   k6 run -e GATEWAY_URL=wss://live.example.com/live -e DIRECTUS_URL=https://cms.example.com -e EVENT_IDS=1,2,3 \
//     -e TOKENS_FILE=/abs/path/tokens.json -e VIEWERS=5000 load-tests/k6/reconnect-storm.ts
import { sleep } from 'k6';
import exec from 'k6/execution';
import type { Options } from 'k6/options';
import { SCENARIOS, eventForViewer, k6Options, scenarioDurationSeconds, stormAtSeconds } from '../src/scenarios.ts';
import { reconnectStormFromEnv, targetFromEnv } from './lib/config.ts';
import { acquireSession, type ViewerSession } from './lib/directus.ts';
import { recordFailedStart, watch } from './lib/viewer.ts';

const scenario = reconnectStormFromEnv(SCENARIOS.reconnectStorm);
const target = targetFromEnv();

export const options: Options = k6Options(scenario);

let session: ViewerSession | undefined;

export default async function viewer(): Promise<void> {
  const startMs = exec.scenario.startTime;
  const stormMs = startMs + stormAtSeconds(scenario) * 1000;
  const endMs = startMs + scenarioDurationSeconds(scenario) * 1000;
  const first = exec.vu.iterationInScenario === 0;
  if (!first) sleep(1 + Math.random() * 2);
  if (Date.now() > endMs - 1000) {
    sleep(Math.max(0, (endMs - Date.now()) / 1000));
    return;
  }
  try {
    session ??= acquireSession(target.directusUrl, exec.vu.idInTest);
  } catch {
    recordFailedStart(first ? 'initial' : 'reconnect');
    return;
  }
  const common = {
    gatewayUrl: target.gatewayUrl,
    accessToken: session.accessToken,
    eventId: eventForViewer(exec.vu.idInTest - 1, target.eventIds),
    snapshotTimeoutMs: scenario.snapshotTimeoutSeconds * 1000,
  };
  if (first && Date.now() < stormMs) {
    await watch({ ...common, phase: 'initial', untilMs: stormMs });
    // Dropped with everyone else; back within the window at a random moment.
    sleep(Math.max(0, stormMs + Math.random() * scenario.reconnectWindowSeconds * 1000 - Date.now()) / 1000);
  }
  await watch({ ...common, phase: 'reconnect', untilMs: endMs });
}
