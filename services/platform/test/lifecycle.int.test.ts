import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManagedProcess } from '@pitwall/testkit';

const fixture = join(import.meta.dirname, 'fixtures', 'lifecycle-service.mjs');

function run(env: Record<string, string>): ManagedProcess {
  return new ManagedProcess(process.execPath, [fixture], {
    name: 'lifecycle-fixture',
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'silent', ...env },
  });
}

describe('runServices', () => {
  it('on SIGTERM runs beforeShutdown, then closes parts in reverse start order, and exits 0', async () => {
    const proc = run({});
    await proc.waitForLine(/^running$/);
    proc.signal('SIGTERM');
    const exit = await proc.exited;
    expect(exit.code).toBe(0);
    const order = proc.lines.filter((l) => /^(start|close|draining)/.test(l));
    expect(order).toEqual(['start first', 'start second', 'start third', 'draining', 'close third', 'close second', 'close first']);
  });

  it('exits 1 when a close hangs beyond the hard timeout', async () => {
    const proc = run({ HANG_CLOSE: 'second' });
    await proc.waitForLine(/^running$/);
    proc.signal('SIGTERM');
    const exit = await proc.exited;
    expect(exit.code).toBe(1);
    expect(proc.lines).not.toContain('close first');
  });

  it('exits 78 naming the variable when the configuration is bad', async () => {
    const proc = run({ REDIS_URL: 'http//oops' });
    const exit = await proc.exited;
    expect(exit.code).toBe(78);
    expect(proc.output()).toMatch(/invalid configuration: REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/);
  });
});
