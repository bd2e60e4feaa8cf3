import { readFileSync } from 'node:fs';

// Where a process spent its CPU time, from a .cpuprofile (V8 sampling profile): self time per
// function and per package, the way a flame graph's bottom-up view reads.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface FunctionCost {
  /** Function name and where it is (repo-relative file:line, package, or a V8 pseudo-frame). */
  name: string;
  location: string;
  selfMs: number;
  /** Share of the sampled wall time (idle included). */
  selfPercent: number;
}

export interface ProfileSummary {
  wallMs: number;
  /** Share of the wall time the thread was busy (not idle). */
  busyPercent: number;
  gcPercent: number;
  /** Self time per package or area (own services, node_modules/<pkg>, node core, V8). */
  byArea: { area: string; selfMs: number; selfPercent: number }[];
  top: FunctionCost[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

export function readCpuProfile(file: string): CpuProfile {
  const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (!isRecord(value) || !Array.isArray(value.nodes) || typeof value.startTime !== 'number' || typeof value.endTime !== 'number') {
    throw new Error(`${file} is not a V8 CPU profile`);
  }
  return value as unknown as CpuProfile;
}

/** Area of a frame: the package under node_modules, the service under services/, node core or V8. */
export function areaOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') return functionName === '(idle)' ? 'idle' : functionName === '(garbage collector)' ? 'gc' : 'v8/native';
  if (url.startsWith('node:')) return 'node core';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1]) return pkg[1];
  const service = /\/(services\/[^/]+|load-tests)\//.exec(url);
  if (service?.[1]) return service[1];
  return 'other';
}

function locationOf(frame: CallFrame): string {
  if (frame.url === '') return 'V8';
  const path = frame.url.replace(/^file:\/\//, '');
  const inRepo = /\/((?:services\/[^/]+|load-tests)\/.*)$/.exec(path);
  const pkg = /node_modules\/(.*)$/.exec(path);
  const shown = pkg?.[1] ?? inRepo?.[1] ?? path;
  return `${shown}:${frame.lineNumber + 1}`;
}

export function summarizeCpuProfile(profile: CpuProfile, topN = 12): ProfileSummary {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; the sample's own duration is the next delta.
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i];
    if (id === undefined) continue;
    const us = Math.max(0, deltas[i + 1] ?? deltas[i] ?? 0);
    selfUs.set(id, (selfUs.get(id) ?? 0) + us);
  }
  const wallUs = Math.max(1, profile.endTime - profile.startTime);
  const byFunction = new Map<string, { frame: CallFrame; us: number }>();
  const byArea = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const frame = node.callFrame;
    const key = `${frame.functionName}\u0000${frame.url}\u0000${frame.lineNumber}`;
    const entry = byFunction.get(key) ?? { frame, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
    const area = areaOf(frame);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  }
  const pct = (us: number): number => (100 * us) / wallUs;
  const idleUs = byArea.get('idle') ?? 0;
  return {
    wallMs: wallUs / 1000,
    busyPercent: 100 - pct(idleUs),
    gcPercent: pct(byArea.get('gc') ?? 0),
    byArea: [...byArea.entries()]
      .filter(([area]) => area !== 'idle')
      .map(([area, us]) => ({ area, selfMs: us / 1000, selfPercent: pct(us) }))
      .sort((a, b) => b.selfMs - a.selfMs),
    top: [...byFunction.values()]
      .filter((f) => f.frame.functionName !== '(idle)')
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((f) => ({
        name: f.frame.functionName || '(anonymous)',
        location: locationOf(f.frame),
        selfMs: f.us / 1000,
        selfPercent: pct(f.us),
      })),
  };
}
