import { sleep } from '@pitwall/testkit';
import { cpuBusySecondsOf, cpuSecondsOf } from '../../proc-stat.js';
import type { BenchDevice } from '../live-gateway/feed.js';
import { interleaveByEvent, startProducer } from '../live-gateway/producer.js';
import { meanMs, percentileMs, type ViewerReport } from '../live-gateway/protocol.js';
import { connectViewers, SHARDS, ViewerProcess, type Server } from '../live-gateway/systems.js';
import type { StepOutcome } from './stepping.js';

// One server under load, step by step: its viewers (added as the steps grow, never dropped), the
// producer run for a step, and the count of what arrived against what the server published. The
// producer is stopped and every frame drained before a step's counts are read, so nothing is in
// flight at either end of the comparison: a frame the viewers did not count was not delivered.

/** One step as measured, beyond what the stepping rules read. */
export interface FanoutStep extends StepOutcome {
  /** How long the producer ran, and how long the CPU figures cover (producer start to the last frame read). */
  seconds: number;
  cpuSeconds: number;
  p50Ms: number;
  /** Mean delivery latency (rx -> viewer), ms. */
  meanMs: number;
  /** Positions appended to the stream during the step, and positions found in the frames read whole. */
  positionsProduced: number;
  sampledPositions: number;
  /** Mean payload of a positions frame. */
  frameBytes: number;
  /** CPU seconds over `cpuSeconds`: the server process, its CPU. */
  serverCpu: number;
  serverCoreBusy: number;
  /** The load generator: viewer processes, and the producer (this process). */
  viewerCpu: number;
  producerCpu: number;
  /** Everything on the clients' CPUs (generator, Redis, Directus, whatever else ran), summed. */
  clientCoresBusy: number;
}

export interface FanoutRunOptions {
  redisUrl: string;
  streamKey: string;
  /** Access token of the viewers (the gateway's protocol). */
  token: string;
  /** Events the viewers watch, spread evenly; devices of these events feed the frames. */
  events: number[];
  devices: BenchDevice[];
  positionsPerSecond: number;
  stepMs: number;
  /** Frames read whole by the viewers for latency: one in this many. */
  sampleEvery: number;
  /** One viewer process per client CPU; the CPUs whose busy time is reported. */
  cpus: { server: number[]; clients: number[] };
  /** The last window's flush, before the drain is watched. */
  windowMs: number;
}

export class FanoutRun {
  private readonly clients: ViewerProcess[];
  private connected = 0;

  constructor(
    private readonly server: Server,
    private readonly options: FanoutRunOptions,
  ) {
    this.clients = options.cpus.clients.map(() => new ViewerProcess());
  }

  /**
   * Connects viewers, or closes the last ones connected, until `viewers` are there (a multiple of the
   * events times the processes, as every step is, keeps every event's share equal); returns how many
   * failed to connect.
   */
  async connectUpTo(viewers: number): Promise<number> {
    const add = viewers - this.connected;
    if (add < 0) {
      const each = -add / this.clients.length;
      await Promise.all(this.clients.map((c) => c.request({ cmd: 'disconnect', viewers: each })));
      this.connected = viewers;
      return 0;
    }
    if (add === 0) return 0;
    const failed = await connectViewers(this.server, this.options, this.clients, add, {
      first: this.connected,
      sampleEvery: this.options.sampleEvery,
    });
    this.connected = viewers;
    return failed;
  }

  private cpuNow() {
    const own = process.cpuUsage();
    return {
      server: cpuSecondsOf(this.server.pid),
      viewers: this.clients.reduce((sum, c) => sum + cpuSecondsOf(c.pid), 0),
      producer: (own.user + own.system) / 1e6,
      serverCore: cpuBusySecondsOf(this.options.cpus.server),
      clientCores: cpuBusySecondsOf(this.options.cpus.clients),
    };
  }

  private async deliveredFrames(): Promise<number> {
    const replies = await Promise.all(this.clients.map((c) => c.request({ cmd: 'count' })));
    return replies.reduce((sum, r) => sum + (r.ok === 'count' ? r.frames : 0), 0);
  }

  /**
   * Runs the producer for one step with `viewers` connected (a multiple of the events, so every
   * event has as many) and counts what arrived. `onProducing` is called as the producer starts and
   * after it stopped (a profiler's window).
   */
  async step(viewers: number, onProducing: (phase: 'start' | 'stop') => void = () => undefined): Promise<FanoutStep> {
    const { events } = this.options;
    const failedViewers = await this.connectUpTo(viewers);
    await sleep(500); // subscribe replies and snapshots out of the way
    await Promise.all(this.clients.map((c) => c.request({ cmd: 'reset' })));
    const publishedBefore = await this.server.framesPublished();
    const before = this.cpuNow();
    const started = Date.now();
    onProducing('start');
    const o = this.options;
    const stopProducer = startProducer(o.redisUrl, o.streamKey, SHARDS, interleaveByEvent(o.devices), o.positionsPerSecond);
    await sleep(o.stepMs);
    const positionsProduced = await stopProducer();
    const seconds = (Date.now() - started) / 1000;
    onProducing('stop');
    // The last windows flush, then the viewers read what is still queued: done when their count stops moving.
    await sleep(o.windowMs + 200);
    let last = -1;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(250)) {
      const now = await this.deliveredFrames();
      if (now === last) break;
      last = now;
    }
    const after = this.cpuNow();
    const cpuSeconds = (Date.now() - started) / 1000;
    const published = (await this.server.framesPublished()) - publishedBefore;
    const reports = (await Promise.all(this.clients.map((c) => c.request({ cmd: 'report' })))).flatMap((r): ViewerReport[] =>
      r.ok === 'report' ? [r.report] : [],
    );
    const delivered = reports.reduce((sum, r) => sum + r.frames, 0);
    const latency = reports.map((r) => r.latencyMs);
    return {
      viewers,
      // Each frame goes to the viewers of its event: viewers / events of them.
      offeredFrames: (published * viewers) / events.length,
      deliveredFrames: delivered,
      p99Ms: percentileMs(latency, 0.99),
      p50Ms: percentileMs(latency, 0.5),
      meanMs: meanMs(latency),
      failedViewers,
      lostViewers: reports.reduce((sum, r) => sum + r.lost, 0),
      seconds,
      cpuSeconds,
      positionsProduced,
      sampledPositions: reports.reduce((sum, r) => sum + r.positions, 0),
      frameBytes: delivered > 0 ? reports.reduce((sum, r) => sum + r.bytes, 0) / delivered : 0,
      serverCpu: after.server - before.server,
      serverCoreBusy: after.serverCore - before.serverCore,
      viewerCpu: after.viewers - before.viewers,
      producerCpu: after.producer - before.producer,
      clientCoresBusy: after.clientCores - before.clientCores,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
