import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './service-process.js';

const UNITS: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };

/**
 * The memory limit the chart gives a component's container (`<component>.resources.limits.memory`
 * in charts/pitwall/values.yaml), bytes: memory tests check a service's peak RSS against it.
 */
export function chartMemoryLimitBytes(component: 'ingestion' | 'writer' | 'liveGateway'): number {
  const lines = readFileSync(join(REPO_ROOT, 'charts/pitwall/values.yaml'), 'utf8').split('\n');
  const start = lines.indexOf(`${component}:`);
  let inLimits = false;
  for (let i = start + 1; start >= 0 && i < lines.length; i++) {
    const line = lines[i] as string;
    if (/^\S/.test(line)) break; // the next top-level key
    if (/^ {4}limits:\s*$/.test(line)) inLimits = true;
    else if (/^ {4}\S/.test(line)) inLimits = false;
    const match = inLimits ? /^ {6}memory:\s*(\d+)(Ki|Mi|Gi)\s*$/.exec(line) : null;
    if (match !== null) return Number(match[1]) * (UNITS[match[2] as string] as number);
  }
  throw new Error(`no resources.limits.memory of ${component} in charts/pitwall/values.yaml`);
}
