import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CPU_PROFILE_PRELOAD, readCpuProfile, summarizeCpuProfile, type ProfileSummary } from '@pitwall/load-tests';
import { freePort, heapUsedAfterGc, rssBytesOf, sleep, uniqueName, waitFor } from '@pitwall/testkit';
import { allowedCpus, pinProcess } from '../cpu-affinity.js';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { FanoutRun, type FanoutStep } from './fanout/fanout-run.js';
import { STEP_RULES, stepSchedule, stepUp, type StepRules, type Stepped } from './fanout/stepping.js';
import { checkEncoder } from './live-gateway/producer.js';
import {
  EVENTS,
  prepareEnvironment,
  startSystem,
  WINDOW_MS,
  type Environment,
  type Server,
  type SystemName,
} from './live-gateway/systems.js';

// Fan-out at saturation (issue 20): how many viewers, and frames delivered per second, one server
// core serves at a race's frame shape, for the gateway, a bare uWebSockets.js publish loop and
// Socket.IO with @socket.io/redis-streams-adapter: the same feed through Redis, the same frames
// (about 1.1 KB of positions per event per window, 10 per second), the same clients, the same
// fan-out (each viewer watches one of EVENTS events). The server under test runs alone on one CPU
// (taskset); everything else (viewers, producer, Redis, Directus) on the others. The offered load
// grows in steps (more viewers) until delivery p99 exceeds the window + 150 ms or less than 99% of
// the offered frames arrive; each step counts every frame at the viewers (framing level) against
// what the server published, with the producer stopped and the frames drained before and after.
// Memory per connected viewer: RSS and V8 heap after a full GC, before and after the first step's
// viewers connect (idle). PROFILE=1 adds a CPU profile of the gateway and of bare uWS at one load.
//
// The gateway runs as built with its defaults except: the window, the connection caps (every viewer
// comes from one address) and re-validation (a Directus call per subscription every minute by
// default: an authorization cost that would load Directus on the viewers' CPU, not a fan-out cost).

const SUITE = 'fanout';
const SYSTEMS: readonly SystemName[] = ['gateway', 'bare uWS', 'Socket.IO'];
/** Positions per event per window: at ~190 bytes each, a frame of about 1.1 KB. */
const POSITIONS_PER_FRAME = 6;
const FRAMES_PER_SECOND = 1000 / WINDOW_MS;
const POSITIONS_PER_SECOND = EVENTS * FRAMES_PER_SECOND * POSITIONS_PER_FRAME;
/** Fds a server process needs beside its viewers' sockets. */
const FD_MARGIN = 1_000;
/** A CPU this busy over a step is saturated. */
const SATURATED = 0.9;

interface Settings {
  stepMs: number;
  firstViewers: number;
  growth: number;
  sampleEvery: number;
  profile: boolean;
}

interface Memory {
  viewers: number;
  rssPerViewer: number;
  heapPerViewer: number;
}

interface SystemRun {
  system: SystemName;
  stepped: Stepped<FanoutStep>;
  memory: Memory;
}

function settingsOf(context: BenchContext): Settings {
  const profile = process.env.PROFILE === '1';
  return context.quick
    ? { stepMs: 3_000, firstViewers: 1_000, growth: 2, sampleEvery: 16, profile }
    : { stepMs: 10_000, firstViewers: 2_000, growth: 1.4, sampleEvery: 16, profile };
}

/** Open files a process may have (soft limit): every viewer is a socket on each side. */
function openFilesLimit(): number {
  const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return Number(match?.[1] ?? 1024);
}

/** Frames per CPU-second of the server at a step. */
const perServerCpuSecond = (step: FanoutStep) => (step.serverCpu > 0 ? step.deliveredFrames / step.serverCpu : 0);
/** Viewers one server core serves at the step's frame rate (viewers over the share of its core used). */
const viewersPerCore = (step: FanoutStep) => (step.serverCpu > 0 ? (step.viewers * step.seconds) / step.serverCpu : 0);
const share = (busy: number, seconds: number, cpus = 1) => busy / seconds / cpus;
const pct = (value: number) => `${Math.round(value * 100)}%`;
const int = (n: number) => Math.round(n).toLocaleString('en-US');

function runOptions(env: Environment, streamKey: string, cpus: { server: number[]; clients: number[] }, settings: Settings) {
  return {
    redisUrl: env.redis.url,
    streamKey,
    token: env.token,
    events: env.seed.events.map((e) => e.id),
    devices: env.devices,
    positionsPerSecond: POSITIONS_PER_SECOND,
    stepMs: settings.stepMs,
    sampleEvery: settings.sampleEvery,
    cpus,
    windowMs: WINDOW_MS,
  };
}

async function startPinned(
  system: SystemName,
  env: Environment,
  streamKey: string,
  cpus: { server: number[] },
  extra: { nodeOptions?: string; env?: Record<string, string> } = {},
): Promise<Server> {
  const server = await startSystem(system, env, streamKey, {
    nodeOptions: extra.nodeOptions,
    env: {
      ...(system === 'gateway'
        ? { GATEWAY_MAX_CONNECTIONS: '1000000', GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: '1000000', GATEWAY_REVALIDATE_INTERVAL_MS: '86400000' }
        : {}),
      ...extra.env,
    },
  });
  pinProcess(server.pid, cpus.server);
  return server;
}

function describeStep(step: FanoutStep & { verdict: string }, cpus: { clients: number[] }): string {
  return (
    `${int(step.viewers)} viewers: ${int(step.deliveredFrames / step.seconds)} frames/s delivered ` +
    `(${pct(step.offeredFrames > 0 ? step.deliveredFrames / step.offeredFrames : 0)} of ${int(step.offeredFrames)} offered, ` +
    `${int(step.frameBytes)} B each), p50 ${step.p50Ms} ms, p99 ${step.p99Ms} ms; ` +
    `server ${pct(share(step.serverCpu, step.cpuSeconds))} of its CPU (CPU busy ${pct(share(step.serverCoreBusy, step.cpuSeconds))}), ` +
    `${int(perServerCpuSecond(step))} frames/CPU-s; generator ${pct(share(step.viewerCpu + step.producerCpu, step.cpuSeconds, cpus.clients.length))}, ` +
    `client CPUs busy ${pct(share(step.clientCoresBusy, step.cpuSeconds, cpus.clients.length))}` +
    `${step.failedViewers + step.lostViewers > 0 ? `; ${step.failedViewers} viewers failed, ${step.lostViewers} lost` : ''}: ${step.verdict}`
  );
}

/**
 * Memory per connected viewer: RSS and V8 heap, each after a full GC, between a tenth of `viewers`
 * connected (the first subscriptions' one-time costs: code, caches, the events' entries) and all of
 * them, idle. The difference over the viewers added is what one more viewer costs.
 */
async function measureMemory(run: FanoutRun, server: Server, inspectPort: number, viewers: number): Promise<Memory> {
  const warm = Math.round(viewers / 10 / EVENTS) * EVENTS;
  const sample = async () => {
    const heap = await heapUsedAfterGc(inspectPort); // first: the GC also shrinks what RSS counts
    await sleep(300);
    return { heap, rss: rssBytesOf(server.pid) };
  };
  const failedWarm = await run.connectUpTo(warm);
  await sleep(1_000);
  const before = await sample();
  const failed = await run.connectUpTo(viewers);
  await sleep(1_000);
  const after = await sample();
  const added = Math.max(1, viewers - warm - failed - failedWarm);
  return { viewers: added, rssPerViewer: (after.rss - before.rss) / added, heapPerViewer: (after.heap - before.heap) / added };
}

async function saturate(
  system: SystemName,
  env: Environment,
  cpus: { server: number[]; clients: number[] },
  settings: Settings,
  schedule: number[],
  rules: StepRules,
  context: BenchContext,
): Promise<SystemRun> {
  const streamKey = uniqueName('bench-fanout');
  const inspectPort = await freePort();
  const server = await startPinned(system, env, streamKey, cpus, { nodeOptions: `--inspect=127.0.0.1:${inspectPort}` });
  const run = new FanoutRun(server, runOptions(env, streamKey, cpus, settings));
  try {
    await sleep(500);
    const memory = await measureMemory(run, server, inspectPort, schedule[0] ?? 0);
    context.log(
      `${system}: ${int(memory.viewers)} more idle viewers: RSS ${int(memory.rssPerViewer)} B each, ` +
        `V8 heap after GC ${int(memory.heapPerViewer)} B each`,
    );
    const stepped = await stepUp(
      schedule,
      (viewers) => run.step(viewers),
      rules,
      (step) => context.log(`${system}, ${describeStep(step, cpus)}`),
    );
    return { system, stepped, memory };
  } finally {
    await run.close();
    await server.stop();
  }
}

/** CPU profile of a system's server during one step at `viewers` (PROFILE=1): where its CPU goes. */
async function profile(
  system: SystemName,
  env: Environment,
  cpus: { server: number[]; clients: number[] },
  settings: Settings,
  viewers: number,
): Promise<{ summary: ProfileSummary; step: FanoutStep }> {
  if (!existsSync(CPU_PROFILE_PRELOAD)) throw new Error(`${CPU_PROFILE_PRELOAD} is missing: build load-tests first`);
  const dir = mkdtempSync(join(tmpdir(), 'pitwall-fanout-profile-'));
  const streamKey = uniqueName('bench-fanout-profile');
  const server = await startPinned(system, env, streamKey, cpus, {
    nodeOptions: `--import=${CPU_PROFILE_PRELOAD}`,
    env: { PITWALL_CPU_PROFILE_DIR: dir, PITWALL_CPU_PROFILE_NAME: system.replace(/\W+/g, '-') },
  });
  const run = new FanoutRun(server, runOptions(env, streamKey, cpus, settings));
  try {
    const step = await run.step(viewers, () => process.kill(server.pid, 'SIGUSR2'));
    const file = await waitFor('the CPU profile', () => readdirSync(dir).find((f) => f.endsWith('.cpuprofile')), { timeoutMs: 30_000 });
    return { summary: summarizeCpuProfile(readCpuProfile(join(dir, file)), 15), step };
  } finally {
    await run.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function logProfile(system: SystemName, { summary, step }: { summary: ProfileSummary; step: FanoutStep }, context: BenchContext): void {
  context.log(
    `profile of ${system} at ${int(step.viewers)} viewers: busy ${summary.busyPercent.toFixed(0)}% of ${(summary.wallMs / 1000).toFixed(1)} s, ` +
      `GC ${summary.gcPercent.toFixed(1)}%, ${int(perServerCpuSecond(step))} frames/CPU-s while profiled`,
  );
  context.log(`  by area: ${summary.byArea.map((a) => `${a.area} ${a.selfPercent.toFixed(1)}%`).join(', ')}`);
  for (const f of summary.top) context.log(`  ${f.selfPercent.toFixed(1).padStart(5)}%  ${f.name}  ${f.location}`);
}

/** The step a system's figures come from: its highest served step, else (a noisy run) its first. */
function figureStep(run: SystemRun): FanoutStep | undefined {
  return run.stepped.served ?? run.stepped.steps[0];
}

function loadText(step: FanoutStep, cpus: { clients: number[] }): string {
  return (
    `server ${pct(share(step.serverCpu, step.cpuSeconds))} of its CPU, generator ${pct(share(step.viewerCpu + step.producerCpu, step.cpuSeconds, cpus.clients.length))} ` +
    `and all processes ${pct(share(step.clientCoresBusy, step.cpuSeconds, cpus.clients.length))} of the clients' CPU`
  );
}

function stepNotes(run: SystemRun, cpus: { clients: number[] }): string {
  const { served, stoppedBy, steps } = run.stepped;
  const last = steps[steps.length - 1];
  const shown = figureStep(run);
  const servedText =
    shown === undefined
      ? 'nothing measured'
      : `${served === undefined ? 'NO STEP SERVED, figures from the first' : 'served'} ${int(shown.viewers)} viewers ` +
        `(${int(shown.deliveredFrames / shown.seconds)} frames/s of ${int(shown.frameBytes)} B, p99 ${shown.p99Ms} ms, ${loadText(shown, cpus)})`;
  const stop =
    stoppedBy === 'schedule exhausted' || last === undefined
      ? 'kept up with the whole schedule'
      : `stopped at ${int(last.viewers)} (${stoppedBy}: p99 ${last.p99Ms} ms, ` +
        `${pct(last.offeredFrames > 0 ? last.deliveredFrames / last.offeredFrames : 0)} delivered, ${loadText(last, cpus)})`;
  return `${run.system} ${servedText}, ${stop}`;
}

/** Whether the stepping may have stopped for the load generator's CPU (or the schedule's end) rather than the server's. */
function generatorBound(run: SystemRun, cpus: { clients: number[] }): boolean {
  const last = run.stepped.steps[run.stepped.steps.length - 1];
  if (last === undefined) return false;
  const clients = share(last.clientCoresBusy, last.cpuSeconds, cpus.clients.length);
  const server = share(last.serverCpu, last.cpuSeconds);
  return run.stepped.stoppedBy === 'schedule exhausted' || (clients >= SATURATED && server < SATURATED);
}

function results(runs: Map<SystemName, SystemRun>, cpus: { clients: number[] }, settings: Settings): BenchResult[] {
  const gateway = runs.get('gateway');
  const bare = runs.get('bare uWS');
  const socketIo = runs.get('Socket.IO');
  if (!gateway || !bare || !socketIo) return [];
  const shape = `${EVENTS} events, ${FRAMES_PER_SECOND} frames/s each of ~${POSITIONS_PER_FRAME} positions, server alone on 1 CPU`;
  const out: BenchResult[] = [];
  for (const [baseline, target] of [
    [bare, 0.8],
    [socketIo, 1.5],
  ] as const) {
    const bound = [gateway, baseline].filter((r) => generatorBound(r, cpus)).map((r) => r.system);
    const caveat =
      bound.length === 0
        ? ''
        : `; LOWER BOUND of ${bound.join(' and ')}'s capacity: the clients' CPU was saturated (or the schedule ran out) before the server's`;
    const g = figureStep(gateway);
    const b = figureStep(baseline);
    out.push(
      {
        suite: SUITE,
        figure: `positions frames delivered per server CPU-second at the highest load served (${shape})`,
        unit: 'frames/CPU-s',
        value: g === undefined ? 0 : perServerCpuSecond(g),
        baseline: { name: baseline.system, value: b === undefined ? 0 : perServerCpuSecond(b) },
        higherIsBetter: true,
        targetRatio: target,
        notes: `${stepNotes(gateway, cpus)}; ${stepNotes(baseline, cpus)}${caveat}`,
      },
      {
        suite: SUITE,
        figure: `viewers per server core at ${FRAMES_PER_SECOND} frames/s, p99 <= ${WINDOW_MS + STEP_RULES.latencyBudgetMs} ms and >= ${pct(STEP_RULES.minDelivered)} delivered (${shape})`,
        unit: 'viewers/core',
        value: g === undefined ? 0 : viewersPerCore(g),
        baseline: { name: baseline.system, value: b === undefined ? 0 : viewersPerCore(b) },
        higherIsBetter: true,
        targetRatio: target,
        notes: `viewers at the same step / share of the server's CPU they used; steps of ${settings.stepMs / 1000} s, x${settings.growth}${caveat}`,
      },
    );
  }
  const memoryNotes =
    `${int(gateway.memory.viewers)} idle subscribed viewers added to a tenth as many; bare uWS ${int(bare.memory.rssPerViewer)} B; ` +
    `V8 heap after GC per viewer: gateway ${int(gateway.memory.heapPerViewer)} B, Socket.IO ${int(socketIo.memory.heapPerViewer)} B, bare uWS ${int(bare.memory.heapPerViewer)} B`;
  out.push(
    {
      suite: SUITE,
      figure: 'memory per connected viewer (RSS after a full GC, delta / viewers)',
      unit: 'bytes',
      value: gateway.memory.rssPerViewer,
      baseline: { name: 'Socket.IO', value: socketIo.memory.rssPerViewer },
      higherIsBetter: false,
      targetRatio: 4,
      notes: memoryNotes,
    },
    {
      suite: SUITE,
      figure: 'V8 heap per connected viewer (after a full GC, delta / viewers)',
      unit: 'bytes',
      value: gateway.memory.heapPerViewer,
      baseline: { name: 'Socket.IO', value: socketIo.memory.heapPerViewer },
      higherIsBetter: false,
    },
  );
  return out;
}

async function run(context: BenchContext): Promise<BenchResult[]> {
  checkEncoder();
  const settings = settingsOf(context);
  const original = allowedCpus();
  if (original.length < 2)
    throw new Error(`the fanout suite needs 2 CPUs (one for the server, one for its clients); this process may use ${original.join(',')}`);
  const cpus = { server: original.slice(0, 1), clients: original.slice(1) };
  // Everything this suite starts from now on (Redis, Directus, viewers, the producer here) runs on the clients' CPUs.
  pinProcess(process.pid, cpus.clients);
  context.log(`server on CPU ${cpus.server.join(',')}, everything else on CPU ${cpus.clients.join(',')}`);
  const rules: StepRules = { windowMs: WINDOW_MS, ...STEP_RULES };
  const maxViewers = openFilesLimit() - FD_MARGIN;
  const schedule = stepSchedule(settings.firstViewers, settings.growth, maxViewers, EVENTS * cpus.clients.length);
  const env = await prepareEnvironment(context);
  try {
    const runs = new Map<SystemName, SystemRun>();
    for (const system of SYSTEMS) runs.set(system, await saturate(system, env, cpus, settings, schedule, rules, context));
    if (settings.profile) {
      // At the gateway's highest step measured (where it stopped): where the cost per viewer shows most.
      const viewers = runs.get('gateway')?.stepped.steps.at(-1)?.viewers ?? schedule[0] ?? 1_000;
      for (const system of ['gateway', 'bare uWS'] as const)
        logProfile(system, await profile(system, env, cpus, settings, viewers), context);
    }
    return results(runs, cpus, settings);
  } finally {
    await env.teardown();
    pinProcess(process.pid, original);
  }
}

export const fanoutSuite: BenchSuite = { name: SUITE, run };
