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
