import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { LiveClient, type SocketLike } from '@pitwall/live-client';
import { Redis } from 'ioredis';
import { login, sharedDirectusSecret, sharedDirectusSeed, sharedDirectusUrl } from '@pitwall/business-plane';
import { sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { startGatewayInProcess, type RunningGateway } from './support/gateway.js';
import { addPositions, type TestPosition } from './support/stream.js';

// The reconnect storm as a test: every viewer of a gateway that drains (1001) moves to the other one at
// once with @pitwall/live-client and resumes from its cursor. Two gateways in this process on the run's
// Redis and the run's shared, seeded Directus (tokens verified locally with its SECRET; the viewer of
// every event logs in, so its token carries the pitwall_events claim). Every viewer must end with every
// position of its event exactly once, in order, and have been answered recovered:true.

const SHARDS = 2;
const VIEWERS = 150;

describe('reconnect storm', () => {
  const redis = new Redis(sharedRedisUrl());
  const gateways: RunningGateway[] = [];
  const seed = sharedDirectusSeed();
  /** The seeded events and, per event, the IMEIs of its entries (in entry order). */
  const events = seed.events.map((event) => ({
    id: event.id,
    imeis: seed.entries
      .filter((entry) => entry.event === event.id)
      .map((entry) => seed.devices.find((device) => device.id === entry.device)?.imei ?? ''),
  }));
  const EVENTS = events.length;
  afterAll(async () => {
    for (const gateway of gateways) await gateway.stop().catch(() => undefined);
    redis.disconnect();
  });

  it('ends with every viewer of the drained gateway recovered, each with every position of its event once and in order', async () => {
    expect(EVENTS).toBeGreaterThanOrEqual(2);
    for (const event of events) expect(event.imeis.length, `entries of event ${event.id}`).toBeGreaterThan(0);
    const eventOf = (i: number) => {
      const event = events[i % EVENTS];
      if (event === undefined) throw new Error(`no event for viewer ${i}`);
      return event;
    };
    const streamKey = uniqueName('storm');
    for (let i = 0; i < 2; i++) {
      gateways.push(
        await startGatewayInProcess({
          REDIS_URL: sharedRedisUrl(),
          STREAM_KEY: streamKey,
          STREAM_SHARDS: String(SHARDS),
          INSTANCE_ID: uniqueName('storm-pod'),
          DIRECTUS_URL: sharedDirectusUrl(),
          DIRECTUS_SECRET: sharedDirectusSecret(),
          DIRECTUS_SERVICE_TOKEN: seed.serviceToken,
          GATEWAY_READ_BLOCK_MS: '100',
          GATEWAY_BATCH_WINDOW_MS: '50',
          GATEWAY_SUBSCRIBE_RATE_PER_SECOND: '100',
        }),
      );
    }
    const [one, two] = gateways;
    if (!one || !two) throw new Error('two gateways');
    const { viewerAll } = seed.users;
    const token = (await login(sharedDirectusUrl(), viewerAll.email, viewerAll.password)).accessToken;

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
      client.subscribe(eventOf(i).id);
      client.start();
      return client;
    });
    try {
      await waitFor('every viewer subscribed', () => viewers.every((v, i) => v.cursorOf(eventOf(i).id) !== undefined));

      const t0 = Date.now();
      const fed: TestPosition[] = [];
      const feed = async (from: number, count: number) => {
        const batch: TestPosition[] = [];
        for (let n = from; n < from + count; n++) {
          for (const event of events)
            for (const [car, imei] of event.imeis.entries()) batch.push({ deviceId: imei, ts: t0 + n * 1_000 + car });
        }
        await addPositions(redis, streamKey, SHARDS, batch);
        fed.push(...batch);
      };
      await feed(0, 5);
      const carsOf = (i: number) => eventOf(i).imeis.length;
      await waitFor('positions before the drain', () => received.every((seen, i) => [...seen.values()].flat().length === 5 * carsOf(i)));
      // The drain, while the race goes on.
      const drained = one.stop();
      await feed(5, 5);
      await drained;
      await feed(10, 5);
      await waitFor('every viewer resumed', () => recovered.every((r) => r !== undefined), { timeoutMs: 30_000 });
      await waitFor(
        'every position at every viewer',
        () => received.every((seen, i) => [...seen.values()].flat().length >= 15 * carsOf(i)),
        {
          timeoutMs: 30_000,
        },
      );

      expect(recovered.filter((r) => r === true)).toHaveLength(VIEWERS);
      for (const [i, viewer] of viewers.entries()) {
        expect(viewer.stats().duplicatesDropped, `viewer ${i}`).toBe(0);
        for (const imei of eventOf(i).imeis) {
          const expected = fed.filter((p) => p.deviceId === imei).map((p) => p.ts);
          expect(received[i]?.get(imei), `viewer ${i} car ${imei}`).toEqual(expected);
        }
      }
    } finally {
      for (const viewer of viewers) viewer.close();
    }
  });
});
