import { readdirSync, readFileSync } from 'node:fs';

// CPU time of processes from /proc (Linux): what a benchmark charges each part of a run.

/** The fields of /proc/<pid>/stat after the command name: [0] is the state, [1] the parent pid. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // exited meanwhile
  }
}

/** User + system CPU seconds a process has used so far (utime and stime, in ticks of 1/100 s). */
export function cpuSecondsOf(pid: number): number {
  const fields = statFields(pid);
  if (fields === undefined) throw new Error(`process ${pid} is gone`);
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds of a process and every descendant alive now (e.g. a postmaster and its backends). A
 * descendant that exits between two readings takes its CPU with it: read while they all run.
 */
export function treeCpuSecondsOf(root: number): number {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const parent = Number(statFields(pid)?.[1]);
    if (!Number.isInteger(parent)) continue;
    children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  let total = 0;
  const stack = [root];
  for (let pid = stack.pop(); pid !== undefined; pid = stack.pop()) {
    const fields = statFields(pid);
    if (fields !== undefined) total += (Number(fields[11]) + Number(fields[12])) / 100;
    stack.push(...(children.get(pid) ?? []));
  }
  return total;
}

/** Busy time (everything but idle and iowait) of these CPUs so far, in seconds (ticks of 1/100 s), from /proc/stat. */
export function cpuBusySecondsOf(cpus: readonly number[]): number {
  let ticks = 0;
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+) (.*)$/.exec(line);
    if (match === null || !cpus.includes(Number(match[1]))) continue;
    // user nice system idle iowait irq softirq steal ...
    const values = (match[2] ?? '').trim().split(/\s+/).map(Number);
    ticks += values.reduce((sum, v, i) => (i === 3 || i === 4 || i > 7 ? sum : sum + v), 0);
  }
  return ticks / 100;
}
