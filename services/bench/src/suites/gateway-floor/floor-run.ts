import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { freePort, REPO_ROOT, scrapeMetric, sleep, startService, uniqueName, waitFor, type ServiceProcess } from '@pitwall/testkit';
import { cpuSecondsOf } from '../../proc-stat.js';
import type { BenchDevice } from '../live-gateway/feed.js';
import { startProducer } from '../live-gateway/producer.js';
import type { RawReaderMessage, RawReaderReply } from './protocol.js';

// One measurement of the gateway's stream floor: a real gateway process (the build, no viewer) and the
// raw reader process (raw-reader.ts) read the same shards in groups of their own while the live-gateway
// suites' producer appends real encoded Positions at a steady rate; the CPU (utime+stime from /proc)
// of each over the same interval, per entry each read in it. Afterwards every position produced must
// have been read once by both.

/** The raw reader's build (also when a test imports this module from source). */
const DIST = join(REPO_ROOT, 'services', 'bench', 'dist', 'suites', 'gateway-floor');
/** The gateway's defaults, given to both readers. */
const READ_COUNT = 1_000;
const READ_BLOCK_MS = 1_000;
/** Shards the floor is measured over (suite gateway-floor, and race-start's measurement at 10x). */
export const FLOOR_SHARDS = 4;
const POSITIONS_RECEIVED = 'pitwall_live_gateway_positions_received_total';

export interface FloorOptions {
  redisUrl: string;
  shards: number;
  devices: number;
  positionsPerSecond: number;
  /** Appending before the measured interval (groups, connections and JIT settle). */
  settleMs: number;
  measureMs: number;
}

export interface FloorResult {
  seconds: number;
  /** Positions the gateway read (positions_received) and its CPU seconds over the interval. */
  gatewayPositions: number;
  gatewayCpuSeconds: number;
  /** Entries the raw reader read and its CPU seconds over the same interval. */
  rawEntries: number;
  rawCpuSeconds: number;
  /** After the producer stopped: positions appended, and read in all by each. */
  produced: number;
  gatewayTotal: number;
  rawTotal: number;
}

/** Microseconds of CPU per position or entry (NaN when none was read). */
export function microsecondsPer(cpuSeconds: number, count: number): number {
  return count > 0 ? (cpuSeconds / count) * 1e6 : Number.NaN;
}

/** Devices with distinct IMEIs: spread over the shards by the contract's shard mapping, as ingestion spreads them. */
export function floorDevices(count: number): BenchDevice[] {
  return Array.from({ length: count }, (_, i) => ({ imei: String(356_307_042_000_000 + i), event: 1, label: `#${i}` }));
}

class RawReader {
  private readonly child: ChildProcess;
  private readonly waiting: { resolve: (reply: RawReaderReply) => void; reject: (err: Error) => void }[] = [];
  readonly ready: Promise<RawReaderReply>;

  constructor(env: Record<string, string>) {
    // The build, with none of this process's flags (a test runner's source conditions).
    this.child = fork(join(DIST, 'raw-reader.js'), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [],
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    this.ready = this.next();
    this.child.on('message', (reply: RawReaderReply) => this.waiting.shift()?.resolve(reply));
    this.child.once('exit', (code) => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`the raw reader exited with ${String(code)}`));
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Entries it has read so far. */
  async read(): Promise<number> {
    const answer = await this.request({ cmd: 'count' });
    return answer.ok === 'count' ? answer.read : Number.NaN;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ cmd: 'close' } satisfies RawReaderMessage);
    await Promise.race([exited, sleep(2_000)]);
    this.child.kill('SIGKILL');
  }

  private request(message: RawReaderMessage): Promise<RawReaderReply> {
    const reply = this.next();
    this.child.send(message);
    return reply;
  }

  private next(): Promise<RawReaderReply> {
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }
}

export async function measureFloor(options: FloorOptions): Promise<FloorResult> {
  const { redisUrl, shards, positionsPerSecond } = options;
  const streamKey = uniqueName('bench-floor');
  let gateway: ServiceProcess | undefined;
  let raw: RawReader | undefined;
  let stopProducer: (() => Promise<number>) | undefined;
  try {
    gateway = await startService('live-gateway', {
      REDIS_URL: redisUrl,
      STREAM_KEY: streamKey,
      STREAM_SHARDS: String(shards),
      INSTANCE_ID: uniqueName('bench-floor'),
      GATEWAY_PORT: String(await freePort()),
      GATEWAY_READ_COUNT: String(READ_COUNT),
      GATEWAY_READ_BLOCK_MS: String(READ_BLOCK_MS),
      // No viewer: Directus is never asked.
      DIRECTUS_URL: 'http://127.0.0.1:9',
      DIRECTUS_SECRET: 'bench-floor-secret-not-used-by-anyone',
      DIRECTUS_SERVICE_TOKEN: 'unused',
      LOG_LEVEL: 'warn',
    });
    const metricsUrl = gateway.metricsUrl;
    raw = new RawReader({
      BENCH_REDIS_URL: redisUrl,
      BENCH_STREAM_KEY: streamKey,
      BENCH_SHARDS: String(shards),
      BENCH_READ_COUNT: String(READ_COUNT),
      BENCH_READ_BLOCK_MS: String(READ_BLOCK_MS),
    });
    await raw.ready;

    stopProducer = startProducer(redisUrl, streamKey, shards, floorDevices(options.devices), positionsPerSecond);
    await sleep(options.settleMs);
    const gatewayCpu = cpuSecondsOf(gateway.proc.pid);
    const rawCpu = cpuSecondsOf(raw.pid);
    const gatewayRead = await scrapeMetric(metricsUrl, POSITIONS_RECEIVED);
    const rawRead = await raw.read();
    const started = Date.now();
    await sleep(options.measureMs);
    const gatewayCpuSeconds = cpuSecondsOf(gateway.proc.pid) - gatewayCpu;
    const rawCpuSeconds = cpuSecondsOf(raw.pid) - rawCpu;
    const gatewayPositions = (await scrapeMetric(metricsUrl, POSITIONS_RECEIVED)) - gatewayRead;
    const rawEntries = (await raw.read()) - rawRead;
    const seconds = (Date.now() - started) / 1000;

    const produced = await stopProducer();
    stopProducer = undefined;
    const reader = raw;
    let gatewayTotal = 0;
    let rawTotal = 0;
    // Both have read everything within a read or two once appending stops; if not, the totals say so.
    await waitFor(
      'every position read by both',
      async () => {
        gatewayTotal = await scrapeMetric(metricsUrl, POSITIONS_RECEIVED);
        rawTotal = await reader.read();
        return gatewayTotal >= produced && rawTotal >= produced;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    ).catch(() => undefined);
    return { seconds, gatewayPositions, gatewayCpuSeconds, rawEntries, rawCpuSeconds, produced, gatewayTotal, rawTotal };
  } finally {
    await stopProducer?.();
    await raw?.close();
    await gateway?.proc.stop();
  }
}
