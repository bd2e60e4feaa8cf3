import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { seedDirectus, startDirectus, type StartedDirectus } from '@pitwall/business-plane';
import { readEventsClaim } from '@pitwall/directus-events-claim';
import {
  cpuBetween,
  createViewerAccounts,
  Histogram,
  loginViewer,
  refreshViewer,
  sampleCpu,
  type ViewerAccount,
  type ViewerSession,
} from '@pitwall/load-tests';
import { PostgresServer, REPO_ROOT, uniqueName } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';

// What the business plane's events-claim extension costs Directus per login and per refresh: two
// Directus 11 on one PostgreSQL, one with the extension and one without, the same seed (events live in
// the window, viewer accounts whose policy reads every event), logins and then refreshes of those
// accounts in batches that alternate between the two (so that a noisy machine's drift hits both
// alike). Directus's CPU (its process) and PostgreSQL's (every backend) are read from /proc around each
// batch. Accounts use cheap password hashing, as the race start's do: with Directus's default argon2
// the hash dominates a login and the hook's share is smaller than shown here.

const SUITE = 'directus-login';
const LOAD_ACCOUNT_HASHING = { HASH_MEMORY_COST: '4096', HASH_TIME_COST: '1', HASH_PARALLELISM: '1' };
const CONCURRENCY = 4;

interface Side {
  name: 'with' | 'without';
  directus: StartedDirectus;
  accounts: ViewerAccount[];
  sessions: ViewerSession[];
  login: Cost;
  refresh: Cost;
  /** Logins of the administrator, whose password has Directus's default argon2 hashing (set at bootstrap). */
  defaultHashLogin: Cost;
}

class Cost {
  directusCpuMs = 0;
  postgresCpuMs = 0;
  count = 0;
  readonly latency = new Histogram();

  perCall(part: 'directus' | 'postgres'): number {
    return this.count === 0 ? Number.NaN : (part === 'directus' ? this.directusCpuMs : this.postgresCpuMs) / this.count;
  }
}

/** Runs `work` on every item, `concurrency` at a time, and adds its CPU and latency to `cost`. */
async function measured<T>(
  side: Side,
  cost: Cost,
  postgresPid: number,
  items: readonly T[],
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  const directusPid = side.directus.pid;
  if (directusPid === undefined) throw new Error(`Directus (${side.name}) is not running`);
  const parts = { directus: directusPid, postgres: postgresPid };
  const before = sampleCpu(parts);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < items.length; i = next++) {
        const item = items[i];
        if (item === undefined) continue;
        const started = performance.now();
        await work(item, i);
        cost.latency.record(performance.now() - started);
      }
    }),
  );
  const used = cpuBetween(before, sampleCpu(parts));
  cost.directusCpuMs += (used.find((u) => u.part === 'directus')?.cpuSeconds ?? 0) * 1000;
  cost.postgresCpuMs += (used.find((u) => u.part === 'postgres')?.cpuSeconds ?? 0) * 1000;
  cost.count += items.length;
}

async function startSide(
  name: Side['name'],
  postgres: PostgresServer,
  options: { events: number; accounts: number; logDir: string },
): Promise<Side> {
  const directus = await startDirectus({
    postgresAdminUrl: postgres.url(),
    eventsClaim: name === 'with',
    env: LOAD_ACCOUNT_HASHING,
    logFile: join(options.logDir, `directus-${name}.log`),
  });
  try {
    const seed = await seedDirectus(directus, { events: options.events, devicesPerEvent: 1 });
    const accounts = await createViewerAccounts(directus.url, seed.adminToken, {
      count: options.accounts,
      policy: seed.policies.viewerAll,
      prefix: uniqueName(`login-${name}`).toLowerCase().replace(/_/g, '-'),
      password: randomBytes(12).toString('base64url'),
    });
    return { name, directus, accounts, sessions: [], login: new Cost(), refresh: new Cost(), defaultHashLogin: new Cost() };
  } catch (err) {
    await directus.destroy();
    throw err;
  }
}

function describeCost(cost: Cost): string {
  return (
    `Directus ${cost.perCall('directus').toFixed(2)} ms, PostgreSQL ${cost.perCall('postgres').toFixed(2)} ms CPU; ` +
    `wall p50 ${cost.latency.quantile(0.5).toFixed(1)} ms, p99 ${cost.latency.quantile(0.99).toFixed(1)} ms (${cost.count})`
  );
}

export const directusLoginSuite: BenchSuite = {
  name: SUITE,
  async run({ quick, log }: BenchContext): Promise<BenchResult[]> {
    const events = 20;
    const accounts = quick ? 40 : 200;
    const rounds = quick ? 2 : 5;
    const logDir = join(REPO_ROOT, '.pitwall', 'bench', SUITE);
    mkdirSync(logDir, { recursive: true });
    const postgres = await PostgresServer.start();
    const sides: Side[] = [];
    try {
      for (const name of ['without', 'with'] as const) sides.push(await startSide(name, postgres, { events, accounts, logDir }));
      const postgresPid = postgres.pid;
      if (postgresPid === undefined) throw new Error('PostgreSQL is not running');
      // One unmeasured login each: a fresh Directus's first permission checks and the window's first read.
      for (const side of sides) {
        const [first] = side.accounts;
        if (first) await loginViewer(side.directus.url, first.email, first.password);
      }

      const perRound = Math.ceil(accounts / rounds);
      for (let round = 0; round < rounds; round++) {
        // Alternate which side goes first, so that neither always follows the other's batch.
        for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
          const batch = side.accounts.slice(round * perRound, (round + 1) * perRound);
          await measured(side, side.login, postgresPid, batch, async (account) => {
            side.sessions.push(await loginViewer(side.directus.url, account.email, account.password));
          });
        }
      }
      for (const side of sides) {
        const { url, adminEmail, adminPassword } = side.directus;
        await measured(side, side.defaultHashLogin, postgresPid, [1, 2, 3], async () => {
          await loginViewer(url, adminEmail, adminPassword);
        });
      }
      for (let round = 0; round < rounds; round++) {
        for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
          const batch = side.sessions.slice(round * perRound, (round + 1) * perRound);
          await measured(side, side.refresh, postgresPid, batch, async (session, i) => {
            side.sessions[round * perRound + i] = await refreshViewer(side.directus.url, session.refreshToken);
          });
        }
      }

      const [without, withClaim] = sides;
      if (!without || !withClaim) throw new Error('both Directus sides are needed');
      // The measured tokens really differ in what is measured: every "with" token lists the events.
      const listed = withClaim.sessions.filter((s) => readEventsClaim(s.accessToken)?.events.length === events).length;
      const unlisted = without.sessions.filter((s) => readEventsClaim(s.accessToken) === undefined).length;
      if (listed !== withClaim.sessions.length || unlisted !== without.sessions.length) {
        throw new Error(
          `expected every token with the extension to list ${events} events (${listed}/${withClaim.sessions.length}) and none without`,
        );
      }
      for (const side of sides) log(`${side.name} the extension: login ${describeCost(side.login)}; refresh ${describeCost(side.refresh)}`);

      const result = (what: 'login' | 'refresh'): BenchResult => ({
        suite: SUITE,
        figure: `Directus CPU per ${what} with the events-claim extension (${events} events in the window, all readable)`,
        unit: 'ms',
        value: withClaim[what].perCall('directus'),
        baseline: { name: `Directus CPU per ${what} without it (same run)`, value: without[what].perCall('directus') },
        higherIsBetter: false,
        notes:
          `PostgreSQL ${withClaim[what].perCall('postgres').toFixed(2)} vs ${without[what].perCall('postgres').toFixed(2)} ms CPU; ` +
          `wall p50 ${withClaim[what].latency.quantile(0.5).toFixed(1)} vs ${without[what].latency.quantile(0.5).toFixed(1)} ms; ` +
          `${withClaim[what].count} ${what === 'login' ? 'logins' : 'refreshes'} each, ${CONCURRENCY} at a time, cheap password hashing ` +
          `(a login with Directus's default argon2: ${withClaim.defaultHashLogin.perCall('directus').toFixed(0)} vs ` +
          `${without.defaultHashLogin.perCall('directus').toFixed(0)} ms)`,
      });
      return [result('login'), result('refresh')];
    } finally {
      for (const side of sides) await side.directus.destroy();
      await postgres.destroy();
    }
  },
};
