import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

// Which CPUs a process may run on (Linux): read from /proc, set with taskset (util-linux). A benchmark
// pins the process it measures to a CPU of its own and everything else to the others.

/** Expands a CPU list such as `0-3,6` into [0, 1, 2, 3, 6]. */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(',')) {
    if (part === '') continue;
    const [from, to] = part.split('-').map(Number);
    if (from === undefined || !Number.isInteger(from)) throw new Error(`bad CPU list ${JSON.stringify(list)}`);
    for (let cpu = from; cpu <= (to ?? from); cpu++) cpus.push(cpu);
  }
  return cpus;
}

/** The CPUs a process may run on now. */
export function allowedCpus(pid: number | 'self' = 'self'): number[] {
  const match = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match?.[1] === undefined) throw new Error(`no Cpus_allowed_list for process ${pid}`);
  return parseCpuList(match[1]);
}

/** Restricts every thread of a process (and what it starts from now on) to these CPUs. */
export function pinProcess(pid: number, cpus: readonly number[]): void {
  try {
    execFileSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus.join(','), String(pid)], { stdio: 'ignore' });
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? 'taskset is missing: install Debian package util-linux' : `taskset could not pin process ${pid}`, {
      cause: err,
    });
  }
}
