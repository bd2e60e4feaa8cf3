import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess } from './managed-process.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export type ServiceName = 'ingestion' | 'writer' | 'live-gateway';

export interface ServiceProcess {
  proc: ManagedProcess;
  metricsPort: number;
  /** Base URL of its /metrics, /healthz, /readyz server. */
  metricsUrl: string;
}

/**
 * Starts one service from its build (`node services/<name>/dist/main.js`), configured only by
 * environment variables, exactly as `npm start -w services/<name>` does. Waits for /readyz unless
 * `waitReady` is false. METRICS_PORT is chosen free unless given.
 */
export async function startService(
  name: ServiceName,
  env: Record<string, string>,
  { waitReady = true, timeoutMs = 20_000 }: { waitReady?: boolean; timeoutMs?: number } = {},
): Promise<ServiceProcess> {
  const entry = join(REPO_ROOT, 'services', name, 'dist', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build first (npm run build; make test does it)`);
  const metricsPort = env.METRICS_PORT ? Number(env.METRICS_PORT) : await freePort();
  const proc = new ManagedProcess(process.execPath, [entry], {
    name,
    cwd: join(REPO_ROOT, 'services', name),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env, METRICS_PORT: String(metricsPort) },
  });
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  if (waitReady) {
    await waitFor(
      `${name} /readyz`,
      async () => {
        if (!proc.running) throw new Error(`${name} exited with ${String(proc.exitCode)}:\n${proc.output()}`);
        const res = await fetch(`${metricsUrl}/readyz`).catch(() => undefined);
        return res?.status === 200;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }
  return { proc, metricsPort, metricsUrl };
}

/** The value of one sample in a Prometheus text exposition (sum over matching label sets). */
export async function scrapeMetric(metricsUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const body = await (await fetch(`${metricsUrl}/metrics`)).text();
  let total = 0;
  let found = false;
  for (const line of body.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const labelText = match[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) continue;
    total += Number(match[3]);
    found = true;
  }
  if (!found) throw new Error(`metric ${name}${JSON.stringify(labels)} not exported at ${metricsUrl}/metrics`);
  return total;
}
