import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { LiveClient, type SocketLike } from '@pitwall/live-client';
import { Redis } from 'ioredis';
import { sharedRedisUrl, startStandInDirectus, uniqueName, waitFor, type StandInDirectus } from '@pitwall/testkit';
import { startGatewayInProcess, type RunningGateway } from './support/gateway.js';
import { addPositions, type TestPosition } from './support/stream.js';
import { directusLikeToken } from './support/tokens.js';

// The reconnect storm as a test: every viewer of a gateway that drains (1001) moves to the other one at
// once with @pitwall/live-client and resumes from its cursor. Two gateways in this process on the run's
// Redis, a stand-in Directus (tokens are verified locally). Every viewer must end with every position
// of its event exactly once, in order, and have been answered recovered:true.

const SECRET = 'storm-int-secret-of-at-least-32-bytes!!';
const SHARDS = 2;
const EVENTS = 3;
const CARS = 4;
const VIEWERS = 150;

const imeiOf = (event: number, car: number) => String(356307048000000 + event * 100 + car);

describe('reconnect storm', () => {
  const redis = new Redis(sharedRedisUrl());
  const gateways: RunningGateway[] = [];
  let directus: StandInDirectus | undefined;
  afterAll(async () => {
    for (const gateway of gateways) await gateway.stop().catch(() => undefined);
    await directus?.close();
    redis.disconnect();
  });

  it('ends with every viewer of the drained gateway recovered, each with every position of its event once and in order', async () => {
    directus = await startStandInDirectus((eventId) =>
      Array.from({ length: CARS }, (_, car) => ({ label: `#${car}`, imei: imeiOf(eventId, car) })),
    );
    const streamKey = uniqueName('storm');
    for (let i = 0; i < 2; i++) {
      gateways.push(
        await startGatewayInProcess({
          REDIS_URL: sharedRedisUrl(),
          STREAM_KEY: streamKey,
          STREAM_SHARDS: String(SHARDS),
          INSTANCE_ID: uniqueName('storm-pod'),
          DIRECTUS_URL: directus.url,
          DIRECTUS_SECRET: SECRET,
          DIRECTUS_SERVICE_TOKEN: 'stand-in',
          GATEWAY_READ_BLOCK_MS: '100',
          GATEWAY_BATCH_WINDOW_MS: '50',
          GATEWAY_SUBSCRIBE_RATE_PER_SECOND: '100',
        }),
      );
    }
    const [one, two] = gateways;
    if (!one || !two) throw new Error('two gateways');
    const token = await directusLikeToken(SECRET);

    const received: Map<string, number[]>[] = [];
    const recovered: (boolean | undefined)[] = [];
    const viewers = Array.from({ length: VIEWERS }, (_, i) => {
      const seen = new Map<string, number[]>();
      received.push(seen);
      recovered.push(undefined);
      const client = new LiveClient({
        url: [`${one.url}/live`, `${two.url}/live`],
        token: () => token,
        socket: (url) => new WebSocket(url) as unknown as SocketLike,
        heartbeatMs: 0,
        elsewhereJitterMs: 200,
      });
      let subscribes = 0;
      client.on('subscribed', (e) => {
        if (++subscribes > 1) recovered[i] = e.recovered;
      });
      client.on('positions', ({ positions }) => {
        for (const p of positions) {
          let list = seen.get(p.device_id);
          if (list === undefined) seen.set(p.device_id, (list = []));
          list.push(p.ts);
        }
      });
      client.subscribe((i % EVENTS) + 1);
      client.start();
      return client;
    });
    try {
      await waitFor('every viewer subscribed', () =>
        viewers.every((v) => v.cursorOf(1) !== undefined || v.cursorOf(2) !== undefined || v.cursorOf(3) !== undefined),
      );

      const t0 = Date.now();
      const fed: TestPosition[] = [];
      const feed = async (from: number, count: number) => {
        const batch: TestPosition[] = [];
        for (let n = from; n < from + count; n++) {
          for (let event = 1; event <= EVENTS; event++)
            for (let car = 0; car < CARS; car++) batch.push({ deviceId: imeiOf(event, car), ts: t0 + n * 1_000 + car });
        }
        await addPositions(redis, streamKey, SHARDS, batch);
        fed.push(...batch);
      };
      await feed(0, 5);
      await waitFor('positions before the drain', () => received.every((seen) => [...seen.values()].flat().length === 5 * CARS));
      // The drain, while the race goes on.
      const drained = one.stop();
      await feed(5, 5);
      await drained;
      await feed(10, 5);
      await waitFor('every viewer resumed', () => recovered.every((r) => r !== undefined), { timeoutMs: 30_000 });
      await waitFor('every position at every viewer', () => received.every((seen) => [...seen.values()].flat().length >= 15 * CARS), {
        timeoutMs: 30_000,
      });

      expect(recovered.filter((r) => r === true)).toHaveLength(VIEWERS);
      for (const [i, viewer] of viewers.entries()) {
        expect(viewer.stats().duplicatesDropped, `viewer ${i}`).toBe(0);
        const event = (i % EVENTS) + 1;
        for (let car = 0; car < CARS; car++) {
          const imei = imeiOf(event, car);
          const expected = fed.filter((p) => p.deviceId === imei).map((p) => p.ts);
          expect(received[i]?.get(imei), `viewer ${i} car ${imei}`).toEqual(expected);
        }
      }
    } finally {
      for (const viewer of viewers) viewer.close();
    }
  });
});
