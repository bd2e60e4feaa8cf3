import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

// Memory of another process, measured as the tests and benchmarks need it: RSS from /proc, and the V8
// heap after a full garbage collection through the DevTools protocol of a process started with
// --inspect=127.0.0.1:<port> (nothing in the process under test has to cooperate).

/** Resident set size of a process, bytes (Linux). */
export function rssBytesOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

/** Peak resident set size of a process since it started (VmHWM), bytes (Linux): no sampling can miss it. */
export function peakRssBytesOf(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

/** Sends DevTools protocol commands, in order, to the first target of an inspector; returns their results. */
async function inspectorCommands(inspectPort: number, commands: { method: string; params?: object }[]): Promise<unknown[]> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error(`no inspector target on port ${inspectPort}`);
  const ws = new WebSocket(url);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const results: unknown[] = [];
    for (const [i, command] of commands.entries()) {
      results.push(
        await new Promise<unknown>((resolve, reject) => {
          const onMessage = (data: Buffer) => {
            const reply = JSON.parse(data.toString('utf8')) as { id?: number; result?: unknown; error?: { message: string } };
            if (reply.id !== i + 1) return;
            ws.off('message', onMessage);
            if (reply.error) reject(new Error(`${command.method}: ${reply.error.message}`));
            else resolve(reply.result);
          };
          ws.on('message', onMessage);
          ws.send(JSON.stringify({ id: i + 1, ...command }));
        }),
      );
    }
    return results;
  } finally {
    ws.close();
  }
}

/** Runs a full garbage collection in the process behind this inspector port. */
export async function collectGarbage(inspectPort: number): Promise<void> {
  await inspectorCommands(inspectPort, [{ method: 'HeapProfiler.collectGarbage' }]);
}

/** The V8 heap in use (process.memoryUsage().heapUsed) right after a full garbage collection, bytes. */
export async function heapUsedAfterGc(inspectPort: number): Promise<number> {
  const [, evaluated] = await inspectorCommands(inspectPort, [
    { method: 'HeapProfiler.collectGarbage' },
    { method: 'Runtime.evaluate', params: { expression: 'process.memoryUsage().heapUsed', returnByValue: true } },
  ]);
  const value = (evaluated as { result?: { value?: unknown } }).result?.value;
  if (typeof value !== 'number') throw new Error(`unexpected heapUsed ${JSON.stringify(evaluated)}`);
  return value;
}
