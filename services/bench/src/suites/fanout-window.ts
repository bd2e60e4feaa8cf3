import { loadavg } from 'node:os';
import { scrapeMetric, uniqueName } from '@pitwall/testkit';
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
  runOptions,
  startPinned,
  withServerCpu,
  type Cpus,
} from './fanout/saturation.js';
import { STEP_RULES, stepSchedule, stepUp, type Stepped } from './fanout/stepping.js';
import { frameShape, MIN_WINDOWS_PER_STEP, stepMsAt } from './fanout/windows.js';
import { EVENTS, prepareEnvironment, type Environment, type Server } from './live-gateway/systems.js';

// Sends per viewer (issue 20): what the batch window buys in viewers per server core. The gateway
// alone, as in the fanout suite (same feed through Redis, same viewers, same pinning, same counting
// of every offered frame, same stepping to saturation), once per GATEWAY_BATCH_WINDOW_MS of WINDOWS_MS.
// The feed's positions per event per second stay the same, so a larger window means fewer, bigger
// frames: 10/s of ~6 positions at 100 ms, 4/s of ~15 at 250 ms, 2/s of ~30 at 500 ms. A step is served
// when p99 delivery (rx to viewer) is within that window + 150 ms and 99% of the offered frames
// arrive. Every window gets the whole schedule: served is not monotonic in the window (a first QUICK
// run had the 500 ms window late at 8,000 viewers with the gateway at 22% of its core, where the
// 100 ms window was served at 43%).
//
// Each step also says where its latency went: the gateway's mean rx -> publish (window wait, read,
// event loop) beside the viewers' mean rx -> viewer. rx is the producer's clock as it appends (the
// producer, Redis and the viewers share the clients' CPU); rx -> publish is taken by the gateway right
// after uWS's publish call, before uWS writes the frame to the sockets (its topic-tree drain, later in
// the same loop iteration). Before the gateway's flush slots (live-gateway README, Sends per viewer) the larger
// windows were late before the publish with the core mostly idle (full run: 6,750 viewers at 250 and
// 500 ms, core 24% and 17% busy): every event's window timer started in the same read, so every
// viewer's frame was written in one drain per window (100-150 ms at 6,000-8,000 viewers, 500 ms), the
// next read waited behind it and the next windows started only then. Not the bench: the producer's
// entries reached Redis within ~1 ms (Redis entry id time - rx) while the gateway read them up to a
// drain late. With a slot per event, QUICK runs (one before, two after, the same viewers both times):
// 100 ms 8,000 -> 8,000 viewers (the core is its limit: late at 12,000, 78% busy), 250 ms 6,000 ->
// 16,000, 500 ms 8,000 -> 16,000 (the end of the QUICK schedule under 20,000 open files; cores 68-77%
// and 45-47% busy), rx -> publish half a window.
//
// What the other two levers of the issue would cost, from live-hub.ts (not built; README, fan-out):
// - A per-viewer rate limit (at most N frames/s) breaks the one serialisation per topic publish: a
//   frame carries only the devices that moved in its window, so a viewer skipping frames must
//   collect what it skipped (the latest position per changed device, as a conflated slow client does)
//   and get its own frame serialised and sent: per viewer per window, the costs the topic avoids.
//   Rate classes instead (a second topic per event batched at e.g. 250 ms, a viewer choosing its
//   class at subscribe) keep one serialisation per topic publish, and buy for those viewers what this
//   sweep measures for the larger window.
// - Merging several subscribed events into one frame per window only helps viewers with several
//   subscriptions (one event per viewer here, and in a race map). uWS sends what is published to one
//   subscriber within one event-loop iteration in one write, but aligning the events' slots for that
//   would put every viewer's write back into one drain (the wait above); one frame of several events
//   would need a new message and a topic per combination of events.

const SUITE = 'fanout-window';
/** The windows swept; the first is the default's, the baseline of the others. */
const WINDOWS_MS = [100, 250, 500] as const;

interface Settings {
  /** The producer's time per step (at least MIN_WINDOWS_PER_STEP windows). */
  stepMs: number;
  firstViewers: number;
  growth: number;
  /** Steps halving the gap between the highest served and the lowest failed step. */
  refine: number;
  sampleEvery: number;
}

/** A step, with the gateway's own mean rx -> publish of the step's positions (window wait and read): the rest of the delivery latency is after the publish. */
type WindowStep = FanoutStep & { publishMeanMs: number };

interface WindowRun {
  windowMs: number;
  stepped: Stepped<WindowStep>;
  /** One-minute load average of the machine before and after the window's steps. */
  load: { before: number; after: number };
  seconds: number;
}

function settingsOf(context: BenchContext): Settings {
  return context.quick
    ? { stepMs: 3_000, firstViewers: 1_000, growth: 2, refine: 1, sampleEvery: 16 }
    : { stepMs: 8_000, firstViewers: 2_000, growth: 1.5, refine: 2, sampleEvery: 16 };
}

/** The gateway's fanout_latency_seconds (rx to publish, per position) so far: its sum (ms) and count. */
async function publishLatency(server: Server): Promise<{ sumMs: number; count: number }> {
  const url = server.metricsUrl;
  if (url === undefined) throw new Error('the gateway exports metrics');
  const name = 'pitwall_live_gateway_fanout_latency_seconds';
  return { sumMs: 1000 * (await scrapeMetric(url, `${name}_sum`)), count: await scrapeMetric(url, `${name}_count`) };
}

/** A step, and the mean rx -> publish of the positions published in it (nothing is published between steps). */
async function measuredStep(run: FanoutRun, server: Server, viewers: number): Promise<WindowStep> {
  const before = await publishLatency(server);
  const step = await run.step(viewers);
  const after = await publishLatency(server);
  const count = after.count - before.count;
  return { ...step, publishMeanMs: count > 0 ? (after.sumMs - before.sumMs) / count : Number.NaN };
}

const describeWindowStep = (step: WindowStep & { verdict: string }, cpus: Cpus) =>
  `${describeStep(step, cpus)}; mean rx to publish ${step.publishMeanMs.toFixed(0)} ms, to viewer ${step.meanMs.toFixed(0)} ms`;

async function sweepWindow(
  windowMs: number,
  env: Environment,
  cpus: Cpus,
  settings: Settings,
  schedule: number[],
  context: BenchContext,
): Promise<WindowRun> {
  const started = Date.now();
  const before = loadavg()[0] ?? 0;
  const streamKey = uniqueName('bench-fanout-window');
  const server = await startPinned('gateway', env, streamKey, cpus, { windowMs });
  const run = new FanoutRun(
    server,
    runOptions(env, streamKey, cpus, { ...settings, stepMs: stepMsAt(windowMs, settings.stepMs) }, windowMs),
  );
  try {
    const stepped = await stepUp(
      schedule,
      (viewers) => measuredStep(run, server, viewers),
      { windowMs, ...STEP_RULES },
      {
        refine: settings.refine,
        multipleOf: EVENTS * cpus.clients.length,
        onStep: (step) => context.log(`${windowMs} ms window, ${describeWindowStep(step, cpus)}`),
      },
    );
    return { windowMs, stepped, load: { before, after: loadavg()[0] ?? 0 }, seconds: (Date.now() - started) / 1000 };
  } finally {
    await run.close();
    await server.stop();
  }
}

function windowNotes(run: WindowRun, cpus: Cpus): string {
  const { served, failed } = run.stepped;
  const shape = frameShape(run.windowMs);
  const servedText =
    served === undefined
      ? 'served no step'
      : `served ${int(served.viewers)} viewers: ${int(served.deliveredFrames / served.seconds)} frames/s of ${int(served.frameBytes)} B ` +
        `(${shape.framesPerSecond} per viewer per second), p50 ${served.p50Ms} ms, p99 ${served.p99Ms} ms ` +
        `(mean ${served.meanMs.toFixed(0)} ms, of which rx to publish ${served.publishMeanMs.toFixed(0)} ms), ` +
        `${int(perServerCpuSecond(served))} frames/CPU-s, ${loadText(served, cpus)}`;
  const failedText =
    failed === undefined
      ? 'kept up with the whole schedule'
      : `not ${int(failed.viewers)} (${failed.verdict}: p99 ${failed.p99Ms} ms, ` +
        `mean ${failed.meanMs.toFixed(0)} ms, of which rx to publish ${failed.publishMeanMs.toFixed(0)} ms, ` +
        `${pct(failed.offeredFrames > 0 ? failed.deliveredFrames / failed.offeredFrames : 0)} delivered, ${loadText(failed, cpus)})`;
  const bound = generatorBound(run.stepped, cpus)
    ? "; LOWER BOUND: the clients' CPU saturated, or the schedule ran out, before the server's"
    : '';
  return (
    `${servedText}; ${failedText}${bound}; ${run.stepped.steps.length} steps in ${run.seconds.toFixed(0)} s, ` +
    `load average ${run.load.before.toFixed(2)} -> ${run.load.after.toFixed(2)}`
  );
}

function results(runs: WindowRun[], cpus: Cpus, settings: Settings): BenchResult[] {
  const [base] = runs;
  if (base === undefined) return [];
  const rule = `p99 <= window + ${STEP_RULES.latencyBudgetMs} ms, >= ${pct(STEP_RULES.minDelivered)} delivered`;
  const steps = `steps x${settings.growth} of ${settings.stepMs / 1000} s or ${MIN_WINDOWS_PER_STEP} windows, refined`;
  const baseline = `window ${base.windowMs} ms`;
  return runs.flatMap((run): BenchResult[] => {
    const shape = frameShape(run.windowMs);
    const feed = `${EVENTS} events, ~${shape.positionsPerFrame} positions per event per frame, ${shape.framesPerSecond} frames/s per viewer`;
    return [
      {
        suite: SUITE,
        figure: `viewers one gateway core serves at GATEWAY_BATCH_WINDOW_MS=${run.windowMs} (${feed}; ${rule}; ${steps})`,
        unit: 'viewers',
        value: run.stepped.served?.viewers ?? 0,
        baseline: { name: baseline, value: base.stepped.served?.viewers ?? 0 },
        higherIsBetter: true,
        notes: windowNotes(run, cpus),
      },
      {
        suite: SUITE,
        figure: `p99 delivery (rx to viewer) at the highest step served, GATEWAY_BATCH_WINDOW_MS=${run.windowMs}`,
        unit: 'ms',
        value: run.stepped.served?.p99Ms ?? Number.NaN,
        baseline: { name: baseline, value: base.stepped.served?.p99Ms ?? Number.NaN },
        higherIsBetter: false,
        notes: `budget ${run.windowMs + STEP_RULES.latencyBudgetMs} ms; a position waits up to one window for its frame`,
      },
    ];
  });
}

async function run(context: BenchContext): Promise<BenchResult[]> {
  const settings = settingsOf(context);
  return withServerCpu(SUITE, async (cpus) => {
    context.log(
      `gateway on CPU ${cpus.server.join(',')}, everything else on CPU ${cpus.clients.join(',')}; windows ${WINDOWS_MS.join(', ')} ms`,
    );
    const schedule = stepSchedule(settings.firstViewers, settings.growth, openFilesLimit() - FD_MARGIN, EVENTS * cpus.clients.length);
    const env = await prepareEnvironment(context);
    try {
      const runs: WindowRun[] = [];
      for (const windowMs of WINDOWS_MS) {
        runs.push(await sweepWindow(windowMs, env, cpus, settings, schedule, context));
      }
      return results(runs, cpus, settings);
    } finally {
      await env.teardown();
    }
  });
}

export const fanoutWindowSuite: BenchSuite = { name: SUITE, run };
