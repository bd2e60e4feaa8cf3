import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  DirectusCallCounter,
  DirectusRest,
  login,
  seedDirectus,
  startDirectus,
  type Seeded,
  type StartedDirectus,
} from '@pitwall/business-plane';
import { startPipeline, type ExistingDirectus, type Pipeline, type PipelineOptions } from '@pitwall/devstack';
import { simulatorImei, startSimulation, type Simulation } from '@pitwall/simulator';
import { PostgresServer, uniqueName } from '@pitwall/testkit';
import type { ViewerSession } from '../directus/directus-auth.js';
import { createViewerAccounts, loginAccounts } from '../directus/viewer-accounts.js';
import type { HarnessTarget } from '../run-scenario.js';
import type { RaceShape } from '../scenarios.js';
import { CPU_PROFILE_PRELOAD } from '../profiling/cpu-profile-preload-path.js';
import { cpuBetween, findProcess, sampleCpu } from '../profiling/process-cpu.js';
import { waitUntilStored, type StoredCheck } from './stored-positions.js';

// The whole stack on this machine for a load run: PostgreSQL, Directus (seeded with the race's events,
// devices and entries), Redis (append-only), ingestion, writer and live gateway as built processes
// (devstack's pipeline), simulated Teltonika devices driving the race, and viewer accounts logged in
// at Directus. The gateway reaches Directus through a counting proxy.

export type ProfiledService = 'ingestion' | 'writer' | 'live-gateway';

export interface LocalRaceOptions {
  race: RaceShape;
  /** Distinct viewer accounts to create and log in; viewers use them round-robin. */
  viewerAccounts: number;
  /** Use these servers (the e2e run's) instead of starting a PostgreSQL; Redis is then shared too (own stream key). */
  servers?: { redisUrl: string; postgresAdminUrl: string };
  /** Use this seeded Directus (its seed must cover the race) instead of starting and seeding one. */
  directus?: ExistingDirectus;
  /** Access-token lifetime of a Directus started here (Directus syntax, e.g. '20s'). Default 15m. */
  accessTokenTtl?: string;
  /** Extra environment per service. */
  env?: PipelineOptions['env'];
  /** Preload the CPU profiler into these services (started and stopped with toggleProfiles()), writing into profileDir. */
  profile?: { dir: string; services: ProfiledService[] };
  logDir?: string;
  log?: (line: string) => void;
}

export interface LocalRace {
  pipeline: Pipeline;
  simulation: Simulation;
  eventIds: number[];
  /** One Directus session per viewer account, logged in during start-up. */
  sessions: ViewerSession[];
  /** Logs every viewer account in again (fresh tokens, e.g. for a scenario after a long one). */
  freshSessions(): Promise<ViewerSession[]>;
  target: HarnessTarget;
  /** Counts the gateway's calls to Directus. */
  directusCalls: DirectusCallCounter;
  /** Milliseconds each set-up step took. */
  setup: Record<string, number>;
  /** A login with Directus' default password hashing (its administrator); undefined when the Directus was given. */
  defaultHashLogin: LoginCost | undefined;
  /** Process group of each part of the stack (for CPU accounting with sampleCpu). */
  cpuParts(): Record<string, number>;
  /** Sends SIGUSR2 to the profiled services: the first call starts their profilers, the second writes the profiles. */
  toggleProfiles(): void;
  /** Stops the devices generating, waits for every record to be acknowledged, then for all of them in PostgreSQL. */
  drainAndCheckStored(timeoutMs: number): Promise<{ drained: boolean; check: StoredCheck }>;
  stop(): Promise<void>;
}

// Load-test accounts only: cheaper argon2id hashing (Directus passes HASH_* to argon2) so that
// thousands of accounts can be created and logged in before the ramp. Logins are not what is measured.
const LOAD_ACCOUNT_HASHING = { HASH_MEMORY_COST: '4096', HASH_TIME_COST: '1', HASH_PARALLELISM: '1' };

/** The Directus process listening on the port of `url` (its environment says PORT=...). */
function directusProcess(url: string): number | undefined {
  const port = new URL(url).port;
  return findProcess(
    (cmd) => cmd.includes('directus') && cmd.includes('cli.js'),
    (env) => env.includes(`PORT=${port}`),
  );
}

/**
 * The race in Directus: device i (simulatorImei(i)) entered in event i % events. seedDirectus makes
 * the events, access and one device per event (it looks every IMEI up in one URL, too long for
 * thousands); the other devices and entries are created here in batches.
 */
async function seedRace(directus: StartedDirectus, race: RaceShape): Promise<Seeded> {
  const seed = await seedDirectus(directus, { events: race.events, devicesPerEvent: 1 });
  const admin = new DirectusRest(directus.url, seed.adminToken);
  const BATCH = 500;
  for (let first = seed.devices.length; first < race.devices; first += BATCH) {
    const indexes = Array.from({ length: Math.min(BATCH, race.devices - first) }, (_, k) => first + k);
    const devices = await admin.post<{ id: number; imei: string }[]>(
      '/items/devices',
      indexes.map((i) => ({ imei: simulatorImei(i), name: `Tracker ${i + 1}` })),
    );
    const entries = devices.map((device, k) => {
      const index = indexes[k] ?? 0;
      const event = seed.events[index % seed.events.length];
      return { event: event?.id, device: device.id, label: `#${Math.floor(index / seed.events.length) + 1}` };
    });
    await admin.post('/items/entries', entries);
  }
  return seed;
}

/** The gateway's two kinds of Directus reads, once per event, straight to Directus (not counted). */
async function warmUp(directusUrl: string, viewerToken: string, serviceToken: string, eventIds: readonly number[]): Promise<void> {
  for (const eventId of eventIds) {
    const reads = [
      { path: `/items/events/${eventId}?fields=id`, token: viewerToken },
      { path: `/items/entries?filter[event][_eq]=${eventId}&fields=label,device.imei&limit=-1`, token: serviceToken },
    ];
    for (const { path, token } of reads) {
      const res = await fetch(`${directusUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
      await res.text();
    }
  }
}

/** What one login costs with Directus' default password hashing: wall time and Directus CPU, ms. */
export interface LoginCost {
  wallMs: number;
  cpuMs: number;
}

async function defaultHashLoginCost(directus: StartedDirectus, times: number): Promise<LoginCost> {
  const pid = directusProcess(directus.url);
  const parts: Record<string, number> = pid === undefined ? {} : { directus: pid };
  const before = sampleCpu(parts);
  const started = performance.now();
  for (let i = 0; i < times; i++) await login(directus.url, directus.adminEmail, directus.adminPassword);
  const wallMs = (performance.now() - started) / times;
  const cpu = cpuBetween(before, sampleCpu(parts)).find((u) => u.part === 'directus');
  return { wallMs, cpuMs: ((cpu?.cpuSeconds ?? Number.NaN) * 1000) / times };
}

export async function startLocalRace(options: LocalRaceOptions): Promise<LocalRace> {
  const log = options.log ?? (() => undefined);
  const { race } = options;
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => log(`stop failed: ${String(err)}`));
    stops.length = 0;
  };
  const setup: Record<string, number> = {};
  const step = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const value = await run();
    setup[name] = Date.now() - started;
    log(`${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return value;
  };

  if (options.logDir) mkdirSync(options.logDir, { recursive: true });
  try {
    let business: ExistingDirectus;
    let postgresAdminUrl: string;
    let defaultHashLogin: LoginCost | undefined;
    if (options.servers) {
      postgresAdminUrl = options.servers.postgresAdminUrl;
    } else {
      const postgres = await step('PostgreSQL', () => PostgresServer.start());
      stops.push(() => postgres.destroy());
      postgresAdminUrl = postgres.url();
    }
    if (options.directus) {
      business = options.directus;
    } else {
      const directus = await step('Directus', () =>
        startDirectus({
          postgresAdminUrl,
          env: LOAD_ACCOUNT_HASHING,
          accessTokenTtl: options.accessTokenTtl,
          logFile: options.logDir ? join(options.logDir, 'directus.log') : undefined,
        }),
      );
      stops.push(() => directus.destroy());
      // The administrator was created at bootstrap, with Directus' default hashing: what a real viewer login costs.
      defaultHashLogin = await defaultHashLoginCost(directus, 5);
      const seed = await step('seed events, devices, entries', () => seedRace(directus, race));
      business = { url: directus.url, secret: directus.secret, seed };
    }
    const { seed } = business;
    if (seed.events.length < race.events || seed.devices.length < Math.min(race.devices, seed.events.length)) {
      throw new Error(
        `the Directus seed has ${seed.events.length} events and ${seed.devices.length} devices; the race needs ${race.events} and ${race.devices}`,
      );
    }
    const eventIds = seed.events.slice(0, race.events).map((e) => e.id);

    const accounts = await step(`${options.viewerAccounts} viewer accounts`, () =>
      createViewerAccounts(business.url, seed.adminToken, {
        count: options.viewerAccounts,
        policy: seed.policies.viewerAll,
        prefix: uniqueName('load').toLowerCase().replace(/_/g, '-'),
        password: randomBytes(12).toString('base64url'),
      }),
    );
    const sessions = await step(`${accounts.length} logins`, () =>
      loginAccounts(business.url, accounts, { onProgress: (n) => log(`  ${n}/${accounts.length} logged in`) }),
    );
    // A Directus in service is warm; a fresh one takes seconds over its first permission checks.
    await step('Directus warm-up', () => warmUp(business.url, sessions[0]?.accessToken ?? seed.serviceToken, seed.serviceToken, eventIds));

    const directusCalls = await DirectusCallCounter.start(business.url);
    stops.push(() => directusCalls.stop());

    const profiled = new Set(options.profile?.services ?? []);
    const profileEnv = (service: ProfiledService): Record<string, string> =>
      options.profile && profiled.has(service)
        ? {
            NODE_OPTIONS: `--import=${pathToFileURL(CPU_PROFILE_PRELOAD).href}`,
            PITWALL_CPU_PROFILE_DIR: options.profile.dir,
            PITWALL_CPU_PROFILE_NAME: service,
          }
        : {};
    const pipeline = await step('ingestion, writer, live gateway', () =>
      startPipeline({
        ports: 'free',
        redisUrl: options.servers?.redisUrl,
        postgresAdminUrl,
        directus: business,
        logDir: options.logDir,
        log,
        env: {
          ingestion: { ...profileEnv('ingestion'), ...options.env?.ingestion },
          writer: { ...profileEnv('writer'), ...options.env?.writer },
          'live-gateway': { ...profileEnv('live-gateway'), DIRECTUS_URL: directusCalls.url, ...options.env?.['live-gateway'] },
        },
      }),
    );
    stops.push(() => pipeline.stop());

    const simulation = startSimulation({ port: pipeline.ingestionPort, devices: race.devices, rate: race.positionHz, trackAcked: true });
    stops.push(() => simulation.stop());
    const gatewayUrl = pipeline.gatewayUrls[0];
    if (!gatewayUrl) throw new Error('the pipeline started no gateway');

    return {
      pipeline,
      simulation,
      eventIds,
      sessions,
      freshSessions: () => loginAccounts(business.url, accounts),
      target: { gatewayUrl, directusUrl: business.url, eventIds },
      directusCalls,
      setup,
      defaultHashLogin,
      cpuParts: () => {
        const parts: Record<string, number> = { 'simulator + harness': process.pid };
        for (const handle of [pipeline.ingestion, pipeline.writer, ...pipeline.gateways]) {
          if (handle.process) parts[handle.label] = handle.process.pid;
        }
        const redisPort = new URL(pipeline.redisUrl).port;
        const postgresPort = new URL(postgresAdminUrl).port;
        const found = {
          redis: findProcess(
            (cmd) => cmd.includes('redis-server') && (cmd.includes(`:${redisPort}`) || cmd.includes(`--port ${redisPort}`)),
          ),
          postgres: findProcess((cmd) => /(^|\/)postgres /.test(cmd) && cmd.includes(`-p ${postgresPort} `)),
          directus: directusProcess(business.url),
        };
        for (const [name, pid] of Object.entries(found)) if (pid !== undefined) parts[name] = pid;
        return parts;
      },
      toggleProfiles: () => {
        const handles = { ingestion: [pipeline.ingestion], writer: [pipeline.writer], 'live-gateway': pipeline.gateways };
        for (const service of profiled) for (const handle of handles[service]) handle.process?.signal('SIGUSR2');
      },
      drainAndCheckStored: async (timeoutMs) => {
        const deadline = Date.now() + timeoutMs;
        const drained = await simulation.drain(timeoutMs);
        const acked = [...simulation.ackedRecords()];
        const check = await waitUntilStored(pipeline.databaseUrl, acked, Math.max(1_000, deadline - Date.now()));
        return { drained, check };
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
