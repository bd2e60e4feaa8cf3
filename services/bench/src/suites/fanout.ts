import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CPU_PROFILE_PRELOAD, readCpuProfile, summarizeCpuProfile, type ProfileSummary } from '@pitwall/load-tests';
import { freePort, heapUsedAfterGc, rssBytesOf, sleep, uniqueName, waitFor } from '@pitwall/testkit';
import type { BenchContext, BenchResult, BenchSuite } from '../suite.js';
import { FanoutRun, type FanoutStep } from './fanout/fanout-run.js';
import {
  describeStep,
  FD_MARGIN,
  generatorBound,
  int,
  loadText,
  openFilesLimit,
  pct,
  perServerCpuSecond,
  runOptions as runOptionsAt,
  startPinned,
  withServerCpu,
  type Cpus,
} from './fanout/saturation.js';
import { STEP_RULES, stepSchedule, stepUp, type StepRules, type Stepped } from './fanout/stepping.js';
import { frameShape } from './fanout/windows.js';
import { EVENTS, prepareEnvironment, WINDOW_MS, type Environment, type SystemName } from './live-gateway/systems.js';

// Fan-out at saturation (issue 20): how many viewers, and frames delivered per second, one server
// core serves at a race's frame shape, for the gateway, a bare uWebSockets.js publish loop and
// Socket.IO with @socket.io/redis-streams-adapter: the same feed through Redis, the same frames
// (about 1.1 KB of positions per event per window, 10 per second), the same clients, the same
// fan-out (each viewer watches one of EVENTS events). The server under test runs alone on one CPU
// (taskset); everything else (viewers, producer, Redis, Directus) on the others. The offered load
// grows in steps (more viewers) until delivery p99 exceeds the window + 150 ms or less than 99% of
// the offered frames arrive, then halfway steps narrow the gap; each step counts every frame at the
// viewers (framing level) against what the server published, with the producer stopped and the
// frames drained before and after. Reported: the viewers one core serves (the highest step served),
// and frames per server CPU-second at the same load (the highest step both systems served), with
// the server's and the clients' CPU shares, a LOWER BOUND note where the clients' CPU saturated first.
// Memory per connected viewer, on a server of its own: RSS and V8 heap after a full GC with N and
// with 2N idle subscribed viewers (the difference, so one-time costs of the first subscriptions do
// not count). PROFILE=1 adds a CPU profile of the gateway and of bare uWS at one load.
//
// The gateway runs as built with its defaults except: the window, the connection caps (every viewer
// comes from one address) and re-validation (a Directus call per subscription every minute by
// default: an authorization cost that would load Directus on the viewers' CPU, not a fan-out cost).

const SUITE = 'fanout';
const SYSTEMS: readonly SystemName[] = ['gateway', 'bare uWS', 'Socket.IO'];
/** Positions per event per window: at ~190 bytes each, a frame of about 1.1 KB. */
const POSITIONS_PER_FRAME = frameShape(WINDOW_MS).positionsPerFrame;

interface Settings {
  stepMs: number;
  /** Memory is measured between this many idle viewers and twice as many. */
  memoryViewers: number;
  firstViewers: number;
  growth: number;
  /** Steps halving the gap between the highest served and the lowest failed step. */
  refine: number;
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
    ? { stepMs: 3_000, memoryViewers: 1_000, firstViewers: 1_000, growth: 2, refine: 1, sampleEvery: 16, profile }
    : { stepMs: 10_000, memoryViewers: 2_500, firstViewers: 2_000, growth: 1.4, refine: 2, sampleEvery: 16, profile };
}

const runOptions = (env: Environment, streamKey: string, cpus: Cpus, settings: Settings) =>
  runOptionsAt(env, streamKey, cpus, settings, WINDOW_MS);

/**
 * Memory per connected viewer, on a server of its own (started with an inspector, which the stepped
 * servers do not get): RSS and V8 heap, each after a full GC, with `viewers` idle subscribed viewers
 * and with twice as many. The difference over the viewers added is what one more viewer costs, without
 * the one-time costs of the first subscriptions (code, caches, the events' entries).
 */
async function measureMemory(system: SystemName, env: Environment, cpus: Cpus, settings: Settings): Promise<Memory> {
  const streamKey = uniqueName('bench-fanout-memory');
  const inspectPort = await freePort();
  const server = await startPinned(system, env, streamKey, cpus, { nodeOptions: `--inspect=127.0.0.1:${inspectPort}` });
  const run = new FanoutRun(server, runOptions(env, streamKey, cpus, settings));
  const sample = async () => {
    await sleep(1_000);
    const heap = await heapUsedAfterGc(inspectPort); // first: the GC also shrinks what RSS counts
    await sleep(300);
    return { heap, rss: rssBytesOf(server.pid) };
  };
  try {
    const viewers = settings.memoryViewers;
    await run.connectUpTo(viewers);
    const before = await sample();
    const failed = await run.connectUpTo(2 * viewers);
    const after = await sample();
    // A viewer that failed holds nothing: count the ones added that hold a subscription.
    const added = Math.max(1, viewers - failed);
    return { viewers: added, rssPerViewer: (after.rss - before.rss) / added, heapPerViewer: (after.heap - before.heap) / added };
  } finally {
    await run.close();
    await server.stop();
  }
}

async function saturate(
  system: SystemName,
  env: Environment,
  cpus: Cpus,
  settings: Settings,
  schedule: number[],
  rules: StepRules,
  context: BenchContext,
): Promise<SystemRun> {
  const memory = await measureMemory(system, env, cpus, settings);
  context.log(
    `${system}: ${int(memory.viewers)} idle viewers more (from ${int(settings.memoryViewers)}): RSS ${int(memory.rssPerViewer)} B each, ` +
      `V8 heap after GC ${int(memory.heapPerViewer)} B each`,
  );
  const streamKey = uniqueName('bench-fanout');
  const server = await startPinned(system, env, streamKey, cpus);
  const run = new FanoutRun(server, runOptions(env, streamKey, cpus, settings));
  try {
    const stepped = await stepUp(schedule, (viewers) => run.step(viewers), rules, {
      refine: settings.refine,
      multipleOf: EVENTS * cpus.clients.length,
      onStep: (step) => context.log(`${system}, ${describeStep(step, cpus)}`),
    });
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
  cpus: Cpus,
  settings: Settings,
  viewers: number,
): Promise<{ summary: ProfileSummary; step: FanoutStep }> {
  if (!existsSync(CPU_PROFILE_PRELOAD)) throw new Error(`${CPU_PROFILE_PRELOAD} is missing: build load-tests first`);
  const dir = mkdtempSync(join(tmpdir(), 'pitwall-fanout-profile-'));
  const streamKey = uniqueName('bench-fanout-profile');
  const server = await startPinned(system, env, streamKey, cpus, {
    nodeOptions: `--import=${pathToFileURL(CPU_PROFILE_PRELOAD).href}`,
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

function stepNotes(run: SystemRun, cpus: { clients: number[] }): string {
  const { served, failed } = run.stepped;
  const servedText =
    served === undefined
      ? 'served no step'
      : `served ${int(served.viewers)} (${int(served.deliveredFrames / served.seconds)} frames/s of ${int(served.frameBytes)} B, ` +
        `p99 ${served.p99Ms} ms, ${loadText(served, cpus)})`;
  const failedText =
    failed === undefined
      ? 'kept up with the whole schedule'
      : `not ${int(failed.viewers)} (${failed.verdict}: p99 ${failed.p99Ms} ms, ` +
        `${pct(failed.offeredFrames > 0 ? failed.deliveredFrames / failed.offeredFrames : 0)} delivered, ${loadText(failed, cpus)})`;
  return `${run.system} ${servedText}, ${failedText}`;
}

/** The same load measured on both systems: the highest step both served, else the first step of each. */
function sameLoad(a: SystemRun, b: SystemRun): { a: FanoutStep; b: FanoutStep; served: boolean } | undefined {
  const servedBy = (run: SystemRun, viewers: number) => run.stepped.steps.find((s) => s.viewers === viewers && s.verdict === 'served');
  const common = a.stepped.steps
    .filter((s) => s.verdict === 'served' && servedBy(b, s.viewers) !== undefined)
    .sort((x, y) => y.viewers - x.viewers)[0];
  const other = common === undefined ? undefined : servedBy(b, common.viewers);
  if (common !== undefined && other !== undefined) return { a: common, b: other, served: true };
  const [firstA, firstB] = [a.stepped.steps[0], b.stepped.steps[0]];
  return firstA === undefined || firstB === undefined ? undefined : { a: firstA, b: firstB, served: false };
}

function results(runs: Map<SystemName, SystemRun>, cpus: { clients: number[] }, settings: Settings): BenchResult[] {
  const gateway = runs.get('gateway');
  const bare = runs.get('bare uWS');
  const socketIo = runs.get('Socket.IO');
  if (!gateway || !bare || !socketIo) return [];
  const shape = `${EVENTS} events, ~${POSITIONS_PER_FRAME} positions per event per ${WINDOW_MS} ms window`;
  const rule = `p99 <= ${WINDOW_MS + STEP_RULES.latencyBudgetMs} ms, >= ${pct(STEP_RULES.minDelivered)} delivered`;
  const out: BenchResult[] = [];
  for (const [baseline, target] of [
    [bare, 0.8],
    [socketIo, 1.5],
  ] as const) {
    const bound = [gateway, baseline].filter((r) => generatorBound(r.stepped, cpus)).map((r) => r.system);
    const caveat =
      bound.length === 0
        ? ''
        : `; LOWER BOUND for ${bound.join(' and ')}: the clients' CPU saturated, or the schedule ran out, before the server's`;
    out.push({
      suite: SUITE,
      figure: `viewers one server core serves (${shape}; ${rule}; steps x${settings.growth} of ${settings.stepMs / 1000} s, refined)`,
      unit: 'viewers',
      value: gateway.stepped.served?.viewers ?? 0,
      baseline: { name: baseline.system, value: baseline.stepped.served?.viewers ?? 0 },
      higherIsBetter: true,
      targetRatio: target,
      notes: `${stepNotes(gateway, cpus)}; ${stepNotes(baseline, cpus)}${caveat}`,
    });
    const same = sameLoad(gateway, baseline);
    if (same === undefined) continue;
    out.push({
      suite: SUITE,
      figure: `positions frames delivered per server CPU-second at the same load (${shape})`,
      unit: 'frames/CPU-s',
      value: perServerCpuSecond(same.a),
      baseline: { name: baseline.system, value: perServerCpuSecond(same.b) },
      higherIsBetter: true,
      targetRatio: target,
      notes:
        `${same.served ? 'the highest step both served' : 'NOT SERVED by both: their first step'}, ${int(same.a.viewers)} viewers: ` +
        `gateway ${int(same.a.deliveredFrames / same.a.seconds)} frames/s, ${loadText(same.a, cpus)}; ` +
        `${baseline.system} ${int(same.b.deliveredFrames / same.b.seconds)} frames/s, ${loadText(same.b, cpus)}`,
    });
  }
  const memoryNotes =
    `from ${int(settings.memoryViewers)} to ${int(2 * settings.memoryViewers)} idle subscribed viewers; bare uWS ${int(bare.memory.rssPerViewer)} B; ` +
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
  const settings = settingsOf(context);
  return withServerCpu(SUITE, async (cpus) => {
    context.log(`server on CPU ${cpus.server.join(',')}, everything else on CPU ${cpus.clients.join(',')}`);
    const rules: StepRules = { windowMs: WINDOW_MS, ...STEP_RULES };
    const maxViewers = openFilesLimit() - FD_MARGIN;
    const schedule = stepSchedule(settings.firstViewers, settings.growth, maxViewers, EVENTS * cpus.clients.length);
    const env = await prepareEnvironment(context);
    try {
      const runs = new Map<SystemName, SystemRun>();
      for (const system of SYSTEMS) runs.set(system, await saturate(system, env, cpus, settings, schedule, rules, context));
      if (settings.profile) {
        // At the gateway's lowest step not served (or its highest): where the cost per viewer shows most.
        const stepped = runs.get('gateway')?.stepped;
        const viewers = stepped?.failed?.viewers ?? stepped?.served?.viewers ?? schedule[0] ?? 1_000;
        for (const system of ['gateway', 'bare uWS'] as const)
          logProfile(system, await profile(system, env, cpus, settings, viewers), context);
      }
      return results(runs, cpus, settings);
    } finally {
      await env.teardown();
    }
  });
}

export const fanoutSuite: BenchSuite = { name: SUITE, run };
