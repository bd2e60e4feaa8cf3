// Token-refresh soak against a cluster: long-lived viewers whose Directus access tokens expire during
// the run (use a short ACCESS_TOKEN_TTL on the test deployment, e.g. 2m). Each viewer refreshes its
// session at Directus /auth/refresh REFRESH_LEAD_SECONDS before `expires_at` and sends the new token
// as an `auth` message on the open socket. Fails on any 4401 close or failed refresh.
//
//   k6 run -e GATEWAY_URL=wss://live.example.com/live -e DIRECTUS_URL=https://cms.example.com -e EVENT_IDS=1 \
//     -e VIEWER_EMAIL='viewer-{n}@example.com' -e VIEWER_PASSWORD=... -e VIEWER_USERS=500 \
//     -e VIEWERS=500 -e HOLD_SECONDS=1800 load-tests/k6/token-refresh-soak.ts
// Every VU needs its own refresh token (Directus rotates them): log in, or give a TOKENS_FILE with at
// least VIEWERS entries of {access_token, refresh_token}.
import { sleep } from 'k6';
import exec from 'k6/execution';
import type { Options } from 'k6/options';
import { SCENARIOS, eventForViewer, k6Options, scenarioDurationSeconds } from '../src/scenarios.ts';
import { tokenRefreshSoakFromEnv, targetFromEnv } from './lib/config.ts';
import { acquireSession, login, refreshSession, type ViewerSession } from './lib/directus.ts';
import { recordFailedStart, watch } from './lib/viewer.ts';

const scenario = tokenRefreshSoakFromEnv(SCENARIOS.tokenRefreshSoak);
const target = targetFromEnv();
const directusUrl = target.directusUrl;
if (!directusUrl) throw new Error('DIRECTUS_URL is required: the soak refreshes tokens at Directus');

export const options: Options = k6Options(scenario, 60);

let session: ViewerSession | undefined;

/** The VU's current session; a returning VU whose token may have expired refreshes (or logs in) first. */
async function currentSession(vu: number, returning: boolean): Promise<ViewerSession> {
  if (!session) return (session = acquireSession(directusUrl, vu));
  if (!returning) return session;
  try {
    return (session = await refreshSession(directusUrl ?? '', session));
  } catch {
    return (session = login(directusUrl ?? '', vu));
  }
}

export default async function viewer(): Promise<void> {
  const endMs = exec.scenario.startTime + scenarioDurationSeconds(scenario) * 1000;
  const returning = exec.vu.iterationInScenario > 0;
  if (returning) sleep(1 + Math.random() * 2);
  if (Date.now() > endMs - 1000) {
    sleep(Math.max(0, (endMs - Date.now()) / 1000));
    return;
  }
  const vu = exec.vu.idInTest;
  let current: ViewerSession;
  try {
    current = await currentSession(vu, returning);
  } catch {
    recordFailedStart(returning ? 'reconnect' : 'initial');
    return;
  }
  if (!current.refreshToken)
    throw new Error('the soak needs refresh tokens: log in (VIEWER_EMAIL) or give {access_token, refresh_token} pairs');
  await watch({
    gatewayUrl: target.gatewayUrl,
    accessToken: current.accessToken,
    eventId: eventForViewer(vu - 1, target.eventIds),
    phase: returning ? 'reconnect' : 'initial',
    untilMs: endMs,
    snapshotTimeoutMs: scenario.snapshotTimeoutSeconds * 1000,
    refresher: {
      leadSeconds: scenario.refreshLeadSeconds,
      renew: async () => {
        session = await refreshSession(directusUrl ?? '', session ?? current);
        return session.accessToken;
      },
    },
  });
}
