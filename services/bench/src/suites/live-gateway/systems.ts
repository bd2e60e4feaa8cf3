import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { login, seedDirectus, startDirectus, type DirectusInstance, type Seeded } from '@pitwall/business-plane';
import { freePort, ManagedProcess, PostgresServer, RedisServer, REPO_ROOT, scrapeMetric, startService, uniqueName } from '@pitwall/testkit';
import { decodeJwt, SignJWT } from 'jose';
import type { BenchContext } from '../../suite.js';
import type { BenchDevice, FeedStats } from './feed.js';
import type { ViewerCommand, ViewerKind, ViewerReply } from './protocol.js';

// The three fan-out systems the live-gateway benchmarks compare, started the same way for every
// suite: the gateway (built service, fed through Redis, viewers authenticated with tokens it verifies
// locally, authorized and given entries by a real Directus), a bare uWebSockets.js publish loop (the
// ceiling) and Socket.IO with @socket.io/redis-streams-adapter, both fed like the gateway
// (feed.ts). Also the viewer processes that measure them (viewers.ts).

export type SystemName = 'gateway' | 'bare uWS' | 'Socket.IO';

export const EVENTS = 10;
export const DEVICES_PER_EVENT = 50;
export const SHARDS = 2;
export const WINDOW_MS = 100;

/** The bench's processes run from its build (also when a test imports this module from source). */
const DIST = join(REPO_ROOT, 'services', 'bench', 'dist', 'suites', 'live-gateway');

export interface Server {
  system: SystemName;
  pid: number;
  url: string;
  kind: ViewerKind;
  /** The gateway's /metrics base URL. */
  metricsUrl?: string;
  /** Frames serialised and published so far (one per event per window), each to every subscriber of its event. */
  framesPublished(): Promise<number>;
  stop(): Promise<void>;
}

export interface Environment {
  redis: RedisServer;
  directus: DirectusInstance;
  seed: Seeded;
  token: string;
  devicesFile: string;
  devices: BenchDevice[];
  dir: string;
}

export interface SystemOptions {
  /** NODE_OPTIONS of the server process (e.g. --inspect for its memory, --import for a profiler). */
  nodeOptions?: string;
  /** Extra environment of the server process. */
  env?: Record<string, string>;
  windowMs?: number;
}

/** Redis, and Directus on PostgreSQL seeded with EVENTS events of DEVICES_PER_EVENT entries, and a viewer token for all of them. */
export async function prepareEnvironment(context: BenchContext): Promise<Environment & { teardown: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'pitwall-bench-gateway-'));
  const redis = await RedisServer.start();
  const postgres = await PostgresServer.start();
  context.log('starting Directus (business plane) for authorization and entries');
  const directus = await startDirectus({ postgresAdminUrl: postgres.url(), logFile: join(dir, 'directus.log') });
  const seed = await seedDirectus(directus, { events: EVENTS, devicesPerEvent: DEVICES_PER_EVENT });
  // A real viewer token re-signed with a long expiry (the bench outlives Directus's 15 minutes).
  const claims = decodeJwt((await login(directus.url, seed.users.viewerAll.email, seed.users.viewerAll.password)).accessToken);
  const token = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('directus')
    .setIssuedAt()
    .setExpirationTime('3h')
    .sign(new TextEncoder().encode(directus.secret));
  const devices: BenchDevice[] = seed.entries.map((entry) => ({
    imei: seed.devices.find((d) => d.id === entry.device)?.imei ?? '',
    event: entry.event,
    label: entry.label,
  }));
  const devicesFile = join(dir, 'devices.json');
  writeFileSync(devicesFile, JSON.stringify(devices));
  return {
    redis,
    directus,
    seed,
    token,
    devices,
    devicesFile,
    dir,
    teardown: async () => {
      await directus.destroy();
      await postgres.destroy();
      await redis.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The environment a baseline server (bare uWS, Socket.IO) needs: Redis and the devices, no Directus. */
export interface BaselineEnvironment {
  redis: { url: string };
  devicesFile: string;
}

export async function startSystem(
  system: SystemName,
  env: BaselineEnvironment & Partial<Omit<Environment, keyof BaselineEnvironment>>,
  streamKey: string,
  options: SystemOptions = {},
): Promise<Server> {
  const port = await freePort();
  const windowMs = options.windowMs ?? WINDOW_MS;
  if (system === 'gateway') {
    if (env.directus === undefined || env.seed === undefined) throw new Error('the gateway needs Directus');
    const service = await startService('live-gateway', {
      NODE_OPTIONS: options.nodeOptions ?? '',
      REDIS_URL: env.redis.url,
      STREAM_KEY: streamKey,
      STREAM_SHARDS: String(SHARDS),
      INSTANCE_ID: uniqueName('bench'),
      GATEWAY_PORT: String(port),
      GATEWAY_BATCH_WINDOW_MS: String(windowMs),
      DIRECTUS_URL: env.directus.url,
      DIRECTUS_SECRET: env.directus.secret,
      DIRECTUS_SERVICE_TOKEN: env.seed.serviceToken,
      // Every viewer process connects from this machine's address.
      GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: '1000000',
      LOG_LEVEL: 'warn',
      ...options.env,
    });
    const metricsUrl = service.metricsUrl;
    return {
      system,
      pid: service.proc.pid,
      url: `ws://127.0.0.1:${port}/live`,
      kind: 'live',
      metricsUrl,
      framesPublished: () => scrapeMetric(metricsUrl, 'pitwall_live_gateway_frames_published_total'),
      stop: async () => void (await service.proc.stop()),
    };
  }
  const script = system === 'bare uWS' ? 'bare-uws-server.js' : 'socketio-server.js';
  const proc = new ManagedProcess(process.execPath, [join(DIST, script)], {
    name: system,
    cwd: join(REPO_ROOT, 'services', 'bench'),
    env: {
      PATH: process.env.PATH ?? '',
      NODE_OPTIONS: options.nodeOptions ?? '',
      BENCH_REDIS_URL: env.redis.url,
      BENCH_STREAM_KEY: streamKey,
      BENCH_SHARDS: String(SHARDS),
      BENCH_WINDOW_MS: String(windowMs),
      BENCH_PORT: String(port),
      BENCH_DEVICES_FILE: env.devicesFile,
      ...options.env,
    },
  });
  await proc.waitForLine(/^listening /);
  const framesPublished = async () => ((await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as FeedStats).framesPublished;
  const stop = async () => void (await proc.stop());
  return system === 'bare uWS'
    ? { system, pid: proc.pid, url: `ws://127.0.0.1:${port}/live`, kind: 'live', framesPublished, stop }
    : { system, pid: proc.pid, url: `http://127.0.0.1:${port}`, kind: 'socketio', framesPublished, stop };
}

/** A viewer process and a request/reply helper over its IPC channel. */
export class ViewerProcess {
  private readonly child: ChildProcess;
  private readonly waiting: ((reply: ViewerReply) => void)[] = [];

  get pid(): number {
    return this.child.pid ?? -1;
  }

  constructor() {
    this.child = fork(join(DIST, 'viewers.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (reply: ViewerReply) => this.waiting.shift()?.(reply));
  }

  request(command: ViewerCommand): Promise<ViewerReply> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.send(command);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.request({ cmd: 'close' });
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 2_000))]);
    this.child.kill('SIGKILL');
  }
}

/**
 * Connects `viewers` more viewers spread evenly over the processes; viewer number `first + i` (over
 * all calls) watches event `i mod EVENTS`, so a multiple of EVENTS viewers watches every event
 * equally. Returns how many failed to subscribe.
 */
export async function connectViewers(
  server: Server,
  env: Pick<Environment, 'token'> & { events: number[] },
  processes: readonly ViewerProcess[],
  viewers: number,
  { first = 0, sampleEvery = 1 }: { first?: number; sampleEvery?: number } = {},
): Promise<number> {
  const share = Math.ceil(viewers / processes.length);
  const replies = await Promise.all(
    processes.map((p, i) =>
      p.request({
        cmd: 'connect',
        kind: server.kind,
        url: server.url,
        token: server.kind === 'live' ? env.token : undefined,
        viewers: Math.max(0, Math.min(share, viewers - i * share)),
        events: env.events,
        offset: first + i * share,
        sampleEvery,
      }),
    ),
  );
  return replies.reduce((sum, r) => sum + (r.ok === 'connected' ? r.failed : 0), 0);
}
