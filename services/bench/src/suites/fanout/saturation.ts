import { readFileSync } from 'node:fs';
import { allowedCpus, pinProcess } from '../../cpu-affinity.js';
import { EVENTS, startSystem, type Environment, type Server, type SystemName } from '../live-gateway/systems.js';
import type { FanoutRunOptions, FanoutStep } from './fanout-run.js';
import type { Stepped } from './stepping.js';
import { POSITIONS_PER_EVENT_PER_SECOND } from './windows.js';

// What the fan-out suites (fanout: three systems at one window; fanout-window: the gateway at several
// windows) share: the feed, the CPUs (the server alone on one, everything else on the others), a
// pinned server, the options of a run, and how a step and its load read.

/** Fds a server process needs beside its viewers' sockets. */
export const FD_MARGIN = 1_000;
/** A CPU this busy over a step is saturated. */
export const SATURATED = 0.9;

export interface Cpus {
  server: number[];
  clients: number[];
}

/** Open files a process may have (soft limit): every viewer is a socket on each side. */
export function openFilesLimit(): number {
  const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return Number(match?.[1] ?? 1024);
}

/** Frames per CPU-second of the server at a step. */
export const perServerCpuSecond = (step: FanoutStep) => (step.serverCpu > 0 ? step.deliveredFrames / step.serverCpu : 0);
export const share = (busy: number, seconds: number, cpus = 1) => busy / seconds / cpus;
export const pct = (value: number) => `${Math.round(value * 100)}%`;
export const int = (n: number) => Math.round(n).toLocaleString('en-US');

/**
 * Runs `body` with this process (and whatever it starts from now on: Redis, Directus, viewers, the
 * producer) pinned to every allowed CPU but the first, which the servers under test get alone; the
 * pinning is undone afterwards, also when `body` fails.
 */
export async function withServerCpu<T>(suite: string, body: (cpus: Cpus) => Promise<T>): Promise<T> {
  const original = allowedCpus();
  if (original.length < 2)
    throw new Error(
      `the ${suite} suite needs 2 CPUs (one for the server, one for its clients); this process may use ${original.join(',')}`,
    );
  const cpus = { server: original.slice(0, 1), clients: original.slice(1) };
  pinProcess(process.pid, cpus.clients);
  try {
    return await body(cpus);
  } finally {
    pinProcess(process.pid, original);
  }
}

export function runOptions(
  env: Environment,
  streamKey: string,
  cpus: Cpus,
  settings: { stepMs: number; sampleEvery: number },
  windowMs: number,
): FanoutRunOptions {
  return {
    redisUrl: env.redis.url,
    streamKey,
    token: env.token,
    events: env.seed.events.map((e) => e.id),
    devices: env.devices,
    positionsPerSecond: EVENTS * POSITIONS_PER_EVENT_PER_SECOND,
    stepMs: settings.stepMs,
    sampleEvery: settings.sampleEvery,
    cpus,
    windowMs,
  };
}

/**
 * A system's server started on the server's CPU. The gateway runs as built with its defaults except
 * the window, the connection caps (every viewer comes from one address) and re-validation (a Directus
 * call per subscription every minute: an authorization cost on the clients' CPU, not a fan-out cost).
 */
export async function startPinned(
  system: SystemName,
  env: Environment,
  streamKey: string,
  cpus: { server: number[] },
  extra: { nodeOptions?: string; env?: Record<string, string>; windowMs?: number } = {},
): Promise<Server> {
  const server = await startSystem(system, env, streamKey, {
    nodeOptions: extra.nodeOptions,
    windowMs: extra.windowMs,
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

export function describeStep(step: FanoutStep & { verdict: string }, cpus: { clients: number[] }): string {
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

export function loadText(step: FanoutStep, cpus: { clients: number[] }): string {
  const server = share(step.serverCpu, step.cpuSeconds);
  const serverCpuBusy = share(step.serverCoreBusy, step.cpuSeconds);
  // Other processes on the server's CPU (another job on the machine) make its latency noise.
  const shared = serverCpuBusy - server > 0.2 ? ` (CPU ${pct(serverCpuBusy)} busy: SHARED)` : '';
  return (
    `server ${pct(server)} of its CPU${shared}, generator ${pct(share(step.viewerCpu + step.producerCpu, step.cpuSeconds, cpus.clients.length))} ` +
    `and all processes ${pct(share(step.clientCoresBusy, step.cpuSeconds, cpus.clients.length))} of the clients' CPU`
  );
}

/** Whether the capacity found may be the load generator's (or the schedule's end) rather than the server's. */
export function generatorBound(stepped: Stepped<FanoutStep>, cpus: { clients: number[] }): boolean {
  const { failed } = stepped;
  if (failed === undefined) return true;
  const clients = share(failed.clientCoresBusy, failed.cpuSeconds, cpus.clients.length);
  const server = share(failed.serverCpu, failed.cpuSeconds);
  return clients >= SATURATED && server < SATURATED;
}
