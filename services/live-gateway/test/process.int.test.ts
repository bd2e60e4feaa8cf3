import { groupsOf } from '@pitwall/streams';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { liveBroadcastGroup, shardKeys } from '@pitwall/contract';
import { freePort, ManagedProcess, REPO_ROOT, scrapeMetric, sharedRedisUrl, startService, uniqueName } from '@pitwall/testkit';
import { join } from 'node:path';
import { TestClient } from './support/client.js';
import { directusLikeToken } from './support/tokens.js';

// The built service as Kubernetes runs it (node dist/main.js, configured only by environment).

/** How the process ended, or 'still running' (then it is killed) when it runs longer than a refusing process would. */
async function exitOf(proc: ManagedProcess): Promise<number | null | 'still running'> {
  const ended = await Promise.race([proc.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000))]);
  if (ended !== undefined) return ended.code;
  await proc.kill();
  return 'still running';
}
const SECRET = 'process-int-secret-of-at-least-32-bytes';

describe('live-gateway process', () => {
  it('exits 78 naming REDIS_URL when it is malformed', async () => {
    const proc = new ManagedProcess(process.execPath, [join(REPO_ROOT, 'services/live-gateway/dist/main.js')], {
      name: 'live-gateway',
      env: { PATH: process.env.PATH ?? '', REDIS_URL: 'localhost:6379', DIRECTUS_SERVICE_TOKEN: 'x' },
    });
    expect((await proc.exited).code).toBe(78);
    expect(proc.output()).toMatch(/REDIS_URL/);
  });

  it('exits 78 naming DIRECTUS_SECRET when it is shorter than an HS256 key should be (32 bytes)', async () => {
    const proc = new ManagedProcess(process.execPath, [join(REPO_ROOT, 'services/live-gateway/dist/main.js')], {
      name: 'live-gateway',
      env: { PATH: process.env.PATH ?? '', DIRECTUS_SERVICE_TOKEN: 'x', DIRECTUS_SECRET: 's' },
    });
    expect(await exitOf(proc)).toBe(78);
    expect(proc.output()).toMatch(/DIRECTUS_SECRET.*32 bytes/);
  });

  it('refuses to start, exit 69 with the reason, when uWebSockets.js fell back to its JavaScript implementation', async () => {
    // What the npm build does by itself on a Node ABI it has no binary for (Node 22/24, musl); the
    // variable makes it do the same here.
    const proc = new ManagedProcess(process.execPath, [join(REPO_ROOT, 'services/live-gateway/dist/main.js')], {
      name: 'live-gateway',
      env: {
        PATH: process.env.PATH ?? '',
        UWS_USE_FALLBACK: '1',
        REDIS_URL: sharedRedisUrl(),
        GATEWAY_PORT: String(await freePort()),
        METRICS_PORT: String(await freePort()),
        DIRECTUS_SERVICE_TOKEN: 'x',
      },
    });
    expect(await exitOf(proc)).toBe(69);
    expect(proc.output()).toMatch(/uWebSockets\.js is not its native build/);
  });

  it('exits naming DIRECTUS_SERVICE_TOKEN when it is missing', async () => {
    const proc = new ManagedProcess(process.execPath, [join(REPO_ROOT, 'services/live-gateway/dist/main.js')], {
      name: 'live-gateway',
      env: { PATH: process.env.PATH ?? '' },
    });
    expect((await proc.exited).code).toBe(78);
    expect(proc.output()).toMatch(/DIRECTUS_SERVICE_TOKEN/);
  });

  it('on SIGTERM closes every client with 1001, destroys its group on every shard and exits 0', async () => {
    const streamKey = uniqueName('proc');
    const instanceId = uniqueName('pod');
    const port = await freePort();
    const service = await startService('live-gateway', {
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: streamKey,
      STREAM_SHARDS: '2',
      INSTANCE_ID: instanceId,
      GATEWAY_PORT: String(port),
      DIRECTUS_URL: `http://127.0.0.1:${await freePort()}`,
      DIRECTUS_SECRET: SECRET,
      DIRECTUS_SERVICE_TOKEN: 'unused',
    });
    const redis = new Redis(sharedRedisUrl());
    try {
      const groupsOn = async (key: string) => ((await groupsOf(redis, key)) ?? []).map((g) => g.name);
      for (const key of shardKeys(streamKey, 2)) expect(await groupsOn(key)).toContain(liveBroadcastGroup(instanceId));

      const clients = await Promise.all(
        [1, 2, 3].map(async () => TestClient.authenticated(`ws://127.0.0.1:${port}`, await directusLikeToken(SECRET))),
      );
      expect(await scrapeMetric(service.metricsUrl, 'pitwall_live_gateway_connections')).toBe(3);

      const exit = service.proc.stop('SIGTERM');
      for (const client of clients) expect((await client.closed).code).toBe(1001);
      // Right before the 1001: going_away with the window to spread the reconnects over (3 viewers at
      // GATEWAY_DRAIN_RECONNECTS_PER_SECOND 1,000: the 1 s floor).
      for (const client of clients) {
        expect(client.messages.at(-1)).toMatchObject({ type: 'error', code: 'going_away', reconnect_within_ms: 1_000 });
      }
      expect((await exit).code).toBe(0);
      for (const key of shardKeys(streamKey, 2)) expect(await groupsOn(key)).not.toContain(liveBroadcastGroup(instanceId));
      expect(service.proc.output()).toMatch(/closed every connection with 1001/);
    } finally {
      await service.proc.stop();
      redis.disconnect();
    }
  });
});
