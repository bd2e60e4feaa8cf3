import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

// CPU time of the parts of a run from /proc, each part a process and its descendants (PostgreSQL's
// backends, which make themselves group leaders; Directus' workers), so that two samples give each
// part's share of a core over a window. Viewer worker processes are a part of their own; whatever else
// ran on the machine (other jobs) is `other processes`, from the machine's total in /proc/stat.

export interface CpuSample {
  atMs: number;
  /** Clock ticks (user + system) per part. */
  ticks: Map<string, number>;
  /** Busy clock ticks of the whole machine. */
  machineTicks: number;
}

export interface CpuUse {
  part: string;
  cpuSeconds: number;
  /** CPU seconds per second of the window: 1 = one core busy. */
  cores: number;
}

export const VIEWER_WORKERS_PART = 'viewer workers';
export const OTHER_PART = 'other processes';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

interface ProcStat {
  pid: number;
  ppid: number;
  ticks: number;
}

function processes(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readText(`/proc/${entry}/stat`);
    if (!stat) continue;
    // Fields after "(comm)": state ppid pgrp ... utime(14) stime(15), counted from 1 with pid.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    if (Number.isFinite(ticks)) stats.push({ pid: Number(entry), ppid: Number(fields[1]), ticks });
  }
  return stats;
}

function cmdlineOf(pid: number): string {
  return (readText(`/proc/${pid}/cmdline`) ?? '').replace(/\0/g, ' ');
}

/** The first process whose command line (and, if given, environment) matches. */
export function findProcess(cmdline: (cmd: string) => boolean, environ?: (env: string[]) => boolean): number | undefined {
  for (const proc of processes()) {
    if (!cmdline(cmdlineOf(proc.pid))) continue;
    if (environ && !environ((readText(`/proc/${proc.pid}/environ`) ?? '').split('\0'))) continue;
    return proc.pid;
  }
  return undefined;
}

function machineBusyTicks(): number {
  const line = (readText('/proc/stat') ?? '').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  return values.reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + (Number.isFinite(v) ? v : 0)), 0);
}

/** Ticks of each named process (with its descendants) now; processes running viewer-worker.js count as their own part. */
export function sampleCpu(parts: Record<string, number>): CpuSample {
  const roots = new Map<number, string>(Object.entries(parts).map(([name, pid]) => [pid, name]));
  const all = processes();
  const parent = new Map(all.map((p) => [p.pid, p.ppid]));
  const partOf = (pid: number): string | undefined => {
    for (let at: number | undefined = pid, depth = 0; at !== undefined && at > 1 && depth < 64; at = parent.get(at), depth++) {
      const name = roots.get(at);
      if (name !== undefined) return name;
    }
    return undefined;
  };
  const ticks = new Map<string, number>();
  for (const proc of all) {
    const part = cmdlineOf(proc.pid).includes('viewer-worker.js') ? VIEWER_WORKERS_PART : partOf(proc.pid);
    if (part !== undefined) ticks.set(part, (ticks.get(part) ?? 0) + proc.ticks);
  }
  return { atMs: Date.now(), ticks, machineTicks: machineBusyTicks() };
}

/** Each part's CPU between two samples, busiest first, with the rest of the machine as `other processes`. */
export function cpuBetween(before: CpuSample, after: CpuSample): CpuUse[] {
  const seconds = Math.max(0.001, (after.atMs - before.atMs) / 1000);
  const hz = clockTicks();
  const uses: CpuUse[] = [];
  let ours = 0;
  for (const [part, ticks] of after.ticks) {
    const used = ticks - (before.ticks.get(part) ?? 0);
    ours += used;
    if (used > 0) uses.push({ part, cpuSeconds: used / hz, cores: used / hz / seconds });
  }
  const other = Math.max(0, after.machineTicks - before.machineTicks - ours);
  uses.push({ part: OTHER_PART, cpuSeconds: other / hz, cores: other / hz / seconds });
  return uses.sort((a, b) => b.cpuSeconds - a.cpuSeconds);
}
