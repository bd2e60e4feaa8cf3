import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { login, seedDirectus, startDirectus, type DirectusInstance, type Seeded } from '@pitwall/business-plane';
import { createPosition, decodePosition, deviceShardKey, encodePosition, POSITION_FIELD } from '@pitwall/contract';
import {
  collectGarbage,
  freePort,
  ManagedProcess,
  PostgresServer,
  RedisServer,
  REPO_ROOT,
  rssBytesOf,
  startService,
  uniqueName,
} from '@pitwall/testkit';
import { Redis } from 'ioredis';
import { decodeJwt, SignJWT } from 'jose';
import { cpuSecondsOf } from '../proc-stat.js';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import type { BenchDevice } from './live-gateway/feed.js';
import { percentileMs, type ViewerCommand, type ViewerKind, type ViewerReply, type ViewerReport } from './live-gateway/protocol.js';

// Live gateway: positions delivered per second and rx -> client-receive latency with 1,000 and
// 5,000 viewers, against (a) a bare uWebSockets.js publish loop with the same feed, frames and
// clients (the ceiling) and (b) Socket.IO + @socket.io/redis-streams-adapter doing the same
// fan-out; p99 at 10k positions/s inbound; memory per idle connection.
//
// Every server under test is its own process; the viewers run in two other processes, and the
// producer in this one. On a 2-core machine the viewers (JavaScript, one message at a time) can
// be the bottleneck rather than the server: so beside delivered/s the suite reports positions
// delivered per server CPU-second (utime+stime of the server process over the measured interval),
// which compares the servers' own cost independently of how fast the clients can read.

const SUITE = 'live-gateway';
const EVENTS = 10;
const DEVICES_PER_EVENT = 50;
const SHARDS = 2;
const WINDOW_MS = 100;
const VIEWER_PROCESSES = 2;
const HERE = dirname(fileURLToPath(import.meta.url));

type SystemName = 'gateway' | 'bare uWS' | 'Socket.IO';

interface Measurement {
  system: SystemName;
  viewers: number;
  inboundPerSecond: number;
  deliveredPerSecond: number;
  expectedPerSecond: number;
  p50: number;
  p99: number;
  cpuSeconds: number;
  perCpuSecond: number;
  failedViewers: number;
}

interface Server {
  pid: number;
  url: string;
  kind: ViewerKind;
  /** The gateway's /metrics base URL. */
  metricsUrl?: string;
  stop(): Promise<void>;
}

interface Environment {
  redis: RedisServer;
  directus: DirectusInstance;
  seed: Seeded;
  token: string;
  devicesFile: string;
  devices: BenchDevice[];
  dir: string;
}

/** A viewer process and a request/reply helper over its IPC channel. */
class ViewerProcess {
  private readonly child: ChildProcess;
  private readonly waiting: ((reply: ViewerReply) => void)[] = [];

  get pid(): number {
    return this.child.pid ?? -1;
  }

  constructor() {
    this.child = fork(join(HERE, 'live-gateway', 'viewers.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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

const pct = (cpu: number, seconds: number) => `${((cpu / seconds) * 100).toFixed(0)}%`;

/** Cumulative buckets [upper bound ms, count] of the gateway's rx -> publish histogram. */
async function fanoutBuckets(metricsUrl: string): Promise<(readonly [number, number])[]> {
  const body = await (await fetch(`${metricsUrl}/metrics`)).text();
  const buckets: (readonly [number, number])[] = [];
  for (const match of body.matchAll(/^pitwall_live_gateway_fanout_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) {
    buckets.push([match[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(match[1]) * 1000, Number(match[2])]);
  }
  return buckets;
}

function bucketQuantile(buckets: readonly (readonly [number, number])[], q: number): number {
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  return buckets.find(([, count]) => count >= q * total)?.[0] ?? Number.NaN;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function varint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * The producer's Position encoder: the few fields a live position has, written by hand, because
 * protobuf-es's generic encoder costs ~20 us a position and the producer must not be what limits
 * a 10k/s run on two cores. Checked against the contract's encoder before every run.
 */
function encodeLivePosition(deviceId: string, ts: number, rx: number, latE7: number, lonE7: number): Buffer {
  const out: number[] = [0x0a, deviceId.length];
  for (let i = 0; i < deviceId.length; i++) out.push(deviceId.charCodeAt(i));
  const zigzag = (n: number) => (n >= 0 ? n * 2 : -n * 2 - 1);
  out.push(0x10);
  varint(out, ts);
  out.push(0x18);
  varint(out, rx);
  out.push(0x20);
  varint(out, zigzag(latE7));
  out.push(0x28);
  varint(out, zigzag(lonE7));
  out.push(0x30, 120 * 2, 0x01, 0x38, 88, 0x40);
  varint(out, 271);
  out.push(0x48, 11);
  return Buffer.from(out);
}

function checkEncoder(): void {
  const fast = encodeLivePosition('356307040000001', 1_764_000_000_123, 1_764_000_000_456, 546_872_000, -252_797_000);
  const reference = createPosition({
    deviceId: '356307040000001',
    recordedAtMs: 1_764_000_000_123n,
    receivedAtMs: 1_764_000_000_456n,
    latE7: 546_872_000,
    lonE7: -252_797_000,
    altitudeM: 120,
    speedKmh: 88,
    headingDeg: 271,
    satellites: 11,
  });
  if (!fast.equals(Buffer.from(encodePosition(reference))) || decodePosition(fast).lonE7 !== reference.lonE7) {
    throw new Error('the bench producer encodes Positions differently from the contract');
  }
}

/** Appends positions at `perSecond` (rx = now), devices round-robin, until stopped. */
function startProducer(redisUrl: string, streamKey: string, devices: readonly BenchDevice[], perSecond: number): () => Promise<void> {
  const redis = new Redis(redisUrl);
  const started = Date.now();
  let sent = 0;
  let next = 0;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    const due = Math.floor(((Date.now() - started) / 1000) * perSecond) - sent;
    if (due <= 0) return;
    busy = true;
    const pipeline = redis.pipeline();
    const now = Date.now();
    for (let i = 0; i < due; i++) {
      const device = devices[next++ % devices.length];
      if (device === undefined) continue;
      const payload = encodeLivePosition(device.imei, now, now, 546_872_000 + (next % 1000), 252_797_000);
      pipeline.xadd(deviceShardKey(streamKey, SHARDS, device.imei), 'MAXLEN', '~', '100000', '*', POSITION_FIELD, payload);
    }
    sent += due;
    void pipeline.exec().finally(() => (busy = false));
  }, 5);
  return async () => {
    clearInterval(timer);
    await sleep(20);
    redis.disconnect();
  };
}

async function prepare(context: BenchContext): Promise<Environment & { teardown: () => Promise<void> }> {
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

/** `nodeOptions`: NODE_OPTIONS of the server process (the memory figure bounds V8's young generation). */
async function startSystem(system: SystemName, env: Environment, streamKey: string, nodeOptions = ''): Promise<Server> {
  const port = await freePort();
  if (system === 'gateway') {
    const service = await startService('live-gateway', {
      NODE_OPTIONS: nodeOptions,
      REDIS_URL: env.redis.url,
      STREAM_KEY: streamKey,
      STREAM_SHARDS: String(SHARDS),
      INSTANCE_ID: uniqueName('bench'),
      GATEWAY_PORT: String(port),
      GATEWAY_BATCH_WINDOW_MS: String(WINDOW_MS),
      DIRECTUS_URL: env.directus.url,
      DIRECTUS_SECRET: env.directus.secret,
      DIRECTUS_SERVICE_TOKEN: env.seed.serviceToken,
      // Every viewer process connects from this machine's address.
      GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: '1000000',
      LOG_LEVEL: 'warn',
    });
    return {
      pid: service.proc.pid,
      url: `ws://127.0.0.1:${port}/live`,
      kind: 'live',
      metricsUrl: service.metricsUrl,
      stop: async () => void (await service.proc.stop()),
    };
  }
  const script = system === 'bare uWS' ? 'bare-uws-server.js' : 'socketio-server.js';
  const proc = new ManagedProcess(process.execPath, [join(HERE, 'live-gateway', script)], {
    name: system,
    cwd: join(REPO_ROOT, 'services', 'bench'),
    env: {
      PATH: process.env.PATH ?? '',
      NODE_OPTIONS: nodeOptions,
      BENCH_REDIS_URL: env.redis.url,
      BENCH_STREAM_KEY: streamKey,
      BENCH_SHARDS: String(SHARDS),
      BENCH_WINDOW_MS: String(WINDOW_MS),
      BENCH_PORT: String(port),
      BENCH_DEVICES_FILE: env.devicesFile,
    },
  });
  await proc.waitForLine(/^listening /);
  return system === 'bare uWS'
    ? { pid: proc.pid, url: `ws://127.0.0.1:${port}/live`, kind: 'live', stop: async () => void (await proc.stop()) }
    : { pid: proc.pid, url: `http://127.0.0.1:${port}`, kind: 'socketio', stop: async () => void (await proc.stop()) };
}

async function connectViewers(server: Server, env: Environment, viewers: number): Promise<{ processes: ViewerProcess[]; failed: number }> {
  const processes = Array.from({ length: VIEWER_PROCESSES }, () => new ViewerProcess());
  const events = env.seed.events.map((e) => e.id);
  const share = Math.ceil(viewers / VIEWER_PROCESSES);
  const replies = await Promise.all(
    processes.map((p, i) =>
      p.request({
        cmd: 'connect',
        kind: server.kind,
        url: server.url,
        token: server.kind === 'live' ? env.token : undefined,
        viewers: Math.min(share, viewers - i * share),
        events,
        offset: i * share,
      }),
    ),
  );
  const failed = replies.reduce((sum, r) => sum + (r.ok === 'connected' ? r.failed : 0), 0);
  return { processes, failed };
}

async function measure(
  system: SystemName,
  env: Environment,
  viewers: number,
  inboundPerSecond: number,
  context: BenchContext,
): Promise<Measurement> {
  const streamKey = uniqueName('bench-live');
  const server = await startSystem(system, env, streamKey);
  const { processes, failed } = await connectViewers(server, env, viewers);
  const stopProducer = startProducer(env.redis.url, streamKey, env.devices, inboundPerSecond);
  try {
    await sleep(context.quick ? 1_500 : 3_000);
    await Promise.all(processes.map((p) => p.request({ cmd: 'reset' })));
    const cpuBefore = cpuSecondsOf(server.pid);
    const viewerCpuBefore = processes.reduce((sum, p) => sum + cpuSecondsOf(p.pid), 0);
    const ownCpuBefore = process.cpuUsage();
    const fanoutBefore = server.metricsUrl === undefined ? undefined : await fanoutBuckets(server.metricsUrl);
    const started = Date.now();
    await sleep(context.quick ? 4_000 : 10_000);
    const reports = await Promise.all(processes.map((p) => p.request({ cmd: 'report' })));
    const seconds = (Date.now() - started) / 1000;
    const cpuSeconds = cpuSecondsOf(server.pid) - cpuBefore;
    const viewerCpu = processes.reduce((sum, p) => sum + cpuSecondsOf(p.pid), 0) - viewerCpuBefore;
    const ownCpu = process.cpuUsage(ownCpuBefore);
    const producerCpu = (ownCpu.user + ownCpu.system) / 1e6;
    let serverSide = '';
    if (server.metricsUrl !== undefined && fanoutBefore !== undefined) {
      const after = await fanoutBuckets(server.metricsUrl);
      const delta = after.map(([le, count], i) => [le, count - (fanoutBefore[i]?.[1] ?? 0)] as const);
      serverSide = `, in the gateway rx -> publish p50 <= ${bucketQuantile(delta, 0.5)} ms, p99 <= ${bucketQuantile(delta, 0.99)} ms`;
    }
    const data = reports.flatMap((r): ViewerReport[] => (r.ok === 'report' ? [r.report] : []));
    const delivered = data.reduce((sum, r) => sum + r.positions, 0);
    const result: Measurement = {
      system,
      viewers,
      inboundPerSecond,
      deliveredPerSecond: delivered / seconds,
      expectedPerSecond: (inboundPerSecond / EVENTS) * (viewers - failed),
      p50: percentileMs(
        data.map((r) => r.latencyMs),
        0.5,
      ),
      p99: percentileMs(
        data.map((r) => r.latencyMs),
        0.99,
      ),
      cpuSeconds,
      perCpuSecond: cpuSeconds > 0 ? delivered / cpuSeconds : Number.POSITIVE_INFINITY,
      failedViewers: failed,
    };
    context.log(
      `${system}, ${viewers} viewers, ${inboundPerSecond}/s in: ${Math.round(result.deliveredPerSecond)}/s delivered ` +
        `(offered ${Math.round(result.expectedPerSecond)}/s), p50 ${result.p50} ms, p99 ${result.p99} ms, ` +
        `CPU: server ${pct(cpuSeconds, seconds)}, viewers ${pct(viewerCpu, seconds)}, producer ${pct(producerCpu, seconds)}` +
        `${serverSide}${failed > 0 ? `, ${failed} viewers failed to subscribe` : ''}`,
    );
    return result;
  } finally {
    await stopProducer();
    await Promise.all(processes.map((p) => p.close()));
    await server.stop();
  }
}

/** RSS growth of a server process per idle (connected, subscribed, no traffic) viewer. */
async function idleMemory(system: SystemName, env: Environment, viewers: number, context: BenchContext): Promise<number> {
  // RSS after a full GC before and after: what the connections retain, not the garbage their
  // subscribes left behind (the snapshot frames), which a GC would take anyway.
  const inspectPort = await freePort();
  const server = await startSystem(system, env, uniqueName('bench-idle'), `--inspect=127.0.0.1:${inspectPort}`);
  try {
    await sleep(1_000);
    await collectGarbage(inspectPort);
    await sleep(300);
    const before = rssBytesOf(server.pid);
    const { processes, failed } = await connectViewers(server, env, viewers);
    await sleep(1_000);
    await collectGarbage(inspectPort);
    await sleep(300);
    const after = rssBytesOf(server.pid);
    await Promise.all(processes.map((p) => p.close()));
    const perConnection = (after - before) / (viewers - failed);
    context.log(
      `${system}: ${viewers - failed} idle viewers, RSS +${((after - before) / 2 ** 20).toFixed(1)} MiB = ${(perConnection / 1024).toFixed(1)} KiB each`,
    );
    return perConnection;
  } finally {
    await server.stop();
  }
}

async function run(context: BenchContext): Promise<BenchResult[]> {
  checkEncoder();
  const env = await prepare(context);
  const results: BenchResult[] = [];
  const viewerCounts = context.quick ? [200, 1_000] : [1_000, 5_000];
  const inbound = 1_000;
  try {
    for (const viewers of viewerCounts) {
      const runs = new Map<SystemName, Measurement>();
      for (const system of ['gateway', 'bare uWS', 'Socket.IO'] as const)
        runs.set(system, await measure(system, env, viewers, inbound, context));
      const gateway = runs.get('gateway');
      const bare = runs.get('bare uWS');
      const socketIo = runs.get('Socket.IO');
      if (!gateway || !bare || !socketIo) continue;
      const label = `${viewers.toLocaleString('en-US')} viewers, ${inbound.toLocaleString('en-US')} positions/s in, ${EVENTS} events`;
      const offered = `offered ${Math.round(gateway.expectedPerSecond).toLocaleString('en-US')}/s`;
      for (const [baseline, target] of [
        [bare, 0.7],
        [socketIo, 10],
      ] as const) {
        results.push(
          {
            suite: SUITE,
            figure: `positions delivered/s (${label})`,
            unit: 'positions/s',
            value: gateway.deliveredPerSecond,
            baseline: { name: baseline.system, value: baseline.deliveredPerSecond },
            higherIsBetter: true,
            targetRatio: target,
            notes: `${offered}; load average ${loadavg()[0]?.toFixed(1)}`,
          },
          {
            suite: SUITE,
            figure: `positions delivered per server CPU-second (${label})`,
            unit: 'positions/CPU-s',
            value: gateway.perCpuSecond,
            baseline: { name: baseline.system, value: baseline.perCpuSecond },
            higherIsBetter: true,
            targetRatio: target,
            notes: `server CPU ${gateway.cpuSeconds.toFixed(1)} s vs ${baseline.cpuSeconds.toFixed(1)} s`,
          },
          {
            suite: SUITE,
            figure: `p50 latency rx -> client (${label})`,
            unit: 'ms',
            value: gateway.p50,
            baseline: { name: baseline.system, value: baseline.p50 },
            higherIsBetter: false,
            notes: `window ${WINDOW_MS} ms`,
          },
          {
            suite: SUITE,
            figure: `p99 latency rx -> client (${label})`,
            unit: 'ms',
            value: gateway.p99,
            baseline: { name: baseline.system, value: baseline.p99 },
            higherIsBetter: false,
            notes: `window ${WINDOW_MS} ms`,
          },
        );
      }
    }

    const fastViewers = context.quick ? 100 : 200;
    const high = await measure('gateway', env, fastViewers, 10_000, context);
    const highBare = await measure('bare uWS', env, fastViewers, 10_000, context);
    results.push({
      suite: SUITE,
      figure: `p99 latency rx -> client at 10,000 positions/s in (${fastViewers} viewers over ${EVENTS} events)`,
      unit: 'ms',
      value: high.p99,
      baseline: { name: `budget: window ${WINDOW_MS} ms + 50 ms`, value: WINDOW_MS + 50 },
      higherIsBetter: false,
      targetRatio: 1,
      notes:
        `p50 ${high.p50} ms, ${Math.round(high.deliveredPerSecond).toLocaleString('en-US')}/s delivered; ` +
        `bare uWS same load: p50 ${highBare.p50} ms, p99 ${highBare.p99} ms; load average ${loadavg()[0]?.toFixed(1)}`,
    });

    const idleViewers = context.quick ? 1_000 : 5_000;
    const gatewayIdle = await idleMemory('gateway', env, idleViewers, context);
    const bareIdle = await idleMemory('bare uWS', env, idleViewers, context);
    results.push({
      suite: SUITE,
      figure: `memory per idle connection (${idleViewers.toLocaleString('en-US')} authenticated, subscribed viewers)`,
      unit: 'bytes',
      value: gatewayIdle,
      baseline: { name: 'target 16 KiB', value: 16 * 1024 },
      higherIsBetter: false,
      targetRatio: 1,
      notes: `RSS after a full GC; bare uWS: ${Math.round(bareIdle)} bytes`,
    });
  } finally {
    await env.teardown();
  }
  return results;
}

export const liveGatewaySuite: BenchSuite = { name: SUITE, run };
