import type { Socket } from 'node:net';
import uWS from 'uWebSockets.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMetricsRegistry } from '@pitwall/platform';
import { waitFor } from '@pitwall/testkit';
import { EventDirectory, type EventDevice, type EventEntries } from '../src/events/event-directory.js';
import { nextSlotMs } from '../src/fanout/flush-slots.js';
import type { HubClient } from '../src/fanout/hub-client.js';
import { LatestPositions } from '../src/fanout/latest-positions.js';
import { LiveHub, type LiveHubOptions } from '../src/fanout/live-hub.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { positionPrefix, type LivePosition } from '../src/protocol/position-json.js';
import { UwsTransport } from '../src/server/uws-transport.js';
import { TestClient } from './support/client.js';
import { testDirectusClient } from './support/directus-client.js';

// The fan-out with real uWS sockets and real clients. The event devices are put into the
// directory directly (what a Directus read yields), so no Directus is involved at all here;
// subscriptions go through the hub as the server does after authorization.

function device(deviceId: string, label: string): EventDevice {
  return { deviceId, label, prefix: positionPrefix(deviceId, label) };
}

function position(deviceId: string, ts: number): LivePosition {
  return {
    deviceId,
    ts,
    rx: Date.now(),
    body: `"ts":${ts},"lat":54.1,"lon":25.2,"alt":1,"speed":2,"heading":3,"sats":4,"rx":${Date.now()}}`,
  };
}

const ALWAYS = { fromMs: Number.NEGATIVE_INFINITY, toMs: Number.POSITIVE_INFINITY };
const SHARED_TRACKER = '356307040000009';

const EVENTS: Record<number, EventEntries> = {
  1: { devices: [device('356307040000000', '#1 Lindqvist'), device('356307040000001', '#2 Moreau')], ...ALWAYS },
  2: { devices: [device('356307040000004', '#1 Okafor')], ...ALWAYS },
  3: { devices: Array.from({ length: 50 }, (_, i) => device(String(356307040100000 + i), `car ${i}`)), ...ALWAYS },
  // One tracker entered in two events, one after the other (device times 1000-1999 and 2000-2999).
  4: { devices: [device(SHARED_TRACKER, 'morning #9'), device('356307040000010', 'morning #10')], fromMs: 1_000, toMs: 1_999 },
  5: { devices: [device(SHARED_TRACKER, 'afternoon #9'), device('356307040000011', 'afternoon #11')], fromMs: 2_000, toMs: 2_999 },
};

/** The hub's client in these tests: a uWS socket and nothing of the protocol. */
class SocketClient implements HubClient {
  transport: UwsTransport<SocketData> | undefined;
  closedBy: string | undefined;
  constructor(
    readonly id: number,
    readonly events: number[],
  ) {}
  disconnect(name: 'slow'): void {
    this.closedBy = name;
    this.transport?.terminate();
  }
}

interface SocketData {
  client: SocketClient;
}

interface HubServer {
  hub: LiveHub;
  metrics: ReturnType<typeof createGatewayMetrics>;
  url: string;
  close(): void;
}

const servers: HubServer[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

async function startHubServer(
  options: Partial<LiveHubOptions> & { maxBackpressure?: number; now?: () => number } = {},
): Promise<HubServer> {
  const app = uWS.App();
  const metrics = createGatewayMetrics(createMetricsRegistry());
  const directory = new EventDirectory(testDirectusClient('http://127.0.0.1:9'), 'unused', metrics, 60_000, 0);
  const hubOptions: LiveHubOptions = {
    batchWindowMs: options.batchWindowMs ?? 0,
    conflateBufferBytes: options.conflateBufferBytes ?? 256 * 1024,
    slowClientTimeoutMs: options.slowClientTimeoutMs ?? 60_000,
  };
  const hub = new LiveHub(app, directory, new LatestPositions(10_000), metrics, hubOptions, options.now);
  let nextId = 1;
  app.ws<SocketData>('/live', {
    maxBackpressure: options.maxBackpressure ?? 4 * 1024 * 1024,
    upgrade: (res, req, context) => {
      const events = req.getQuery('events').split(',').map(Number);
      res.upgrade<SocketData>(
        { client: new SocketClient(nextId++, events) },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      const { client } = ws.getUserData();
      client.transport = new UwsTransport(ws);
      for (const eventId of client.events) hub.join(client, eventId, EVENTS[eventId] ?? { devices: [], ...ALWAYS }, `sub-${eventId}`);
    },
    drain: (ws) => hub.onDrain(ws.getUserData().client),
    close: (ws) => {
      const { client } = ws.getUserData();
      client.transport = undefined;
      hub.removeClient(client);
    },
  });
  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (socket) => (socket === false ? reject(new Error('listen failed')) : resolve(socket))),
  );
  const timer = setInterval(() => hub.checkSlowClients(), 20);
  const server = {
    hub,
    metrics,
    url: `ws://127.0.0.1:${uWS.us_socket_local_port(listenSocket)}`,
    close: () => {
      clearInterval(timer);
      uWS.us_listen_socket_close(listenSocket);
    },
  };
  servers.push(server);
  return server;
}

async function subscriber(server: HubServer, events: number[]): Promise<TestClient> {
  const client = await TestClient.open(`${server.url}/live?events=${events.join(',')}`);
  for (const eventId of events) await client.expect((m) => m.type === 'subscribed' && m.event_id === eventId, `subscribed ${eventId}`);
  return client;
}

const value = async (metric: { get(): Promise<{ values: { value: number; labels: object }[] }> }, labels: object = {}) =>
  (await metric.get()).values
    .filter((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l))
    .reduce((s, v) => s + v.value, 0);

describe('fan-out over uWS topics', () => {
  it('gives a snapshot of the event devices only, then one frame per event per window, serialised once for every recipient', async () => {
    const server = await startHubServer({ batchWindowMs: 50 });
    // Known before anyone subscribes (as the stream-tail warm-up does): device 0 of event 1 and event 2's device.
    server.hub.onPositions([position('356307040000000', 100), position('356307040000004', 100), position('356307049999999', 100)]);

    const one = await subscriber(server, [1]);
    const oneAgain = await subscriber(server, [1]);
    const two = await subscriber(server, [2]);
    const both = await subscriber(server, [1, 2]);
    const snapshot = one.messages.find((m) => m.type === 'subscribed');
    expect(snapshot).toMatchObject({ event_id: 1, uid: 'sub-1' });
    expect(snapshot?.snapshot).toEqual([expect.objectContaining({ device_id: '356307040000000', label: '#1 Lindqvist', ts: 100 })]);

    const published = await value(server.metrics.framesPublished);
    server.hub.onPositions([
      position('356307040000000', 200),
      position('356307040000001', 200),
      position('356307040000004', 200),
      position('356307049999999', 200), // in no event: goes nowhere
      position('356307040000000', 201),
    ]);
    await waitFor('frames', () => both.framesOf('positions').length === 2);
    await waitFor('frames', () => one.framesOf('positions').length === 1 && oneAgain.framesOf('positions').length === 1);
    await waitFor('frames', () => two.framesOf('positions').length === 1);
    expect(one.positions(1).map((p) => [p.device_id, p.label, p.ts])).toEqual([
      ['356307040000000', '#1 Lindqvist', 200],
      ['356307040000001', '#2 Moreau', 200],
      ['356307040000000', '#1 Lindqvist', 201],
    ]);
    expect(two.positions().map((p) => [p.device_id, p.ts])).toEqual([['356307040000004', 200]]);
    expect(both.positions(1)).toEqual(one.positions(1));
    expect(both.positions(2)).toEqual(two.positions(2));
    // Two frames built (one per event) for five recipients.
    expect((await value(server.metrics.framesPublished)) - published).toBe(2);
    expect(await value(server.metrics.framesSent, { kind: 'positions' })).toBe(5);
    await Promise.all([one, oneAgain, two, both].map((c) => c.close()));
  });

  it('publishes the frames of events read together each at its own slot, not all in one go', async () => {
    const window = 1_000;
    // The hub reads the clock at each call, so that it sees the fake one below.
    const server = await startHubServer({ batchWindowMs: window, now: () => Date.now() });
    const one = await subscriber(server, [1]);
    const two = await subscriber(server, [2]);
    // The hub's timers and clock only; the sockets stay real.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: 1_750_000_000_000 });
    try {
      const published = await value(server.metrics.framesPublished);
      const now = Date.now();
      server.hub.onPositions([position('356307040000000', 500), position('356307040000004', 500)]);
      const [first, second] = [nextSlotMs(now, window, 1), nextSlotMs(now, window, 2)].sort((a, b) => a - b) as [number, number];
      expect(first).toBeLessThan(second);
      await vi.advanceTimersByTimeAsync(first - now);
      expect((await value(server.metrics.framesPublished)) - published).toBe(1);
      await vi.advanceTimersByTimeAsync(second - first);
      expect((await value(server.metrics.framesPublished)) - published).toBe(2);
    } finally {
      vi.useRealTimers();
    }
    await waitFor('frames', () => one.framesOf('positions').length === 1 && two.framesOf('positions').length === 1);
    await Promise.all([one, two].map((c) => c.close()));
  });

  it('forwards a device position only when newer than the last one forwarded: resends never show twice nor move a car back', async () => {
    const server = await startHubServer();
    const one = await subscriber(server, [1]);
    // During an outage from the live-only stream; then the device's resends arrive through the durable
    // stream (older and the same), with another device's position; then the device's next one.
    server.hub.onPositions([position('356307040000000', 300)]);
    server.hub.onPositions([position('356307040000000', 200), position('356307040000000', 300), position('356307040000001', 250)]);
    server.hub.onPositions([position('356307040000000', 400)]);
    await waitFor('positions', () => one.positions(1).length === 3);
    expect(one.positions(1).map((p) => [p.device_id, p.ts])).toEqual([
      ['356307040000000', 300],
      ['356307040000001', 250],
      ['356307040000000', 400],
    ]);
    expect(await value(server.metrics.positionsDropped, { reason: 'stale' })).toBe(2);
    await one.close();
  });

  it('conflates a client that stops reading without delaying a fast one; it gets the latest position of each device when it reads again', async () => {
    const server = await startHubServer({ conflateBufferBytes: 64 * 1024, maxBackpressure: 1024 * 1024 });
    const fast = await subscriber(server, [3]);
    const slow = await subscriber(server, [3]);
    const slowSocket = (slow.socket as unknown as { _socket: Socket })._socket;
    slowSocket.pause();

    const devices = EVENTS[3]!.devices;
    let round = 0;
    const push = () => {
      round++;
      server.hub.onPositions(devices.map((d) => position(d.deviceId, round)));
    };
    // Until the slow one's kernel buffers are full and the hub notices, then some more.
    while ((await value(server.metrics.conflatedClients)) === 0 && round < 20_000) {
      push();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await value(server.metrics.conflations)).toBe(1);
    for (let i = 0; i < 20; i++) push();
    const lastRound = round;

    // The fast client has everything while the slow one still does not read.
    await waitFor('fast client has every position', () => fast.positions(3).length === lastRound * devices.length, { timeoutMs: 20_000 });
    expect(
      fast
        .positions(3)
        .slice(-devices.length)
        .every((p) => p.ts === lastRound),
    ).toBe(true);

    slowSocket.resume();
    await waitFor(
      'slow client has the latest of every device',
      () => {
        const latest = new Map<string, number>();
        for (const p of slow.positions(3)) latest.set(p.device_id, Math.max(latest.get(p.device_id) ?? 0, p.ts));
        return devices.every((d) => latest.get(d.deviceId) === lastRound);
      },
      { timeoutMs: 20_000 },
    );
    // It did not get a stale queue of everything.
    expect(slow.positions(3).length).toBeLessThan(lastRound * devices.length);
    expect(await value(server.metrics.conflationDrops)).toBeGreaterThan(0);
    await waitFor('back on the shared frames', async () => (await value(server.metrics.conflatedClients)) === 0);
    push();
    await waitFor(
      'next frame reaches both',
      () => slow.positions(3).some((p) => p.ts === round) && fast.positions(3).some((p) => p.ts === round),
    );
    await Promise.all([fast.close(), slow.close()]);
  });

  it('closes a client that stays stuck beyond the limit and counts it', async () => {
    const server = await startHubServer({ conflateBufferBytes: 64 * 1024, maxBackpressure: 1024 * 1024, slowClientTimeoutMs: 200 });
    const stuck = await subscriber(server, [3]);
    const other = await subscriber(server, [3]);
    const socket = (stuck.socket as unknown as { _socket: Socket })._socket;
    socket.pause();
    let round = 0;
    while ((await value(server.metrics.slowClientsClosed)) === 0 && round < 40_000) {
      round++;
      server.hub.onPositions(EVENTS[3]!.devices.map((d) => position(d.deviceId, round)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await value(server.metrics.slowClientsClosed)).toBe(1);
    expect(server.hub.memberCount).toBe(1);
    socket.resume();
    expect((await stuck.closed).code).toBe(1006);
    await waitFor('the other client got everything', () => other.positions(3).length === round * EVENTS[3]!.devices.length, {
      timeoutMs: 20_000,
    });
    await other.close();
  });

  it('routes a tracker entered in two events by device time: each event gets (and snapshots) only positions inside its window', async () => {
    const server = await startHubServer();
    server.hub.onPositions([position(SHARED_TRACKER, 1_500)]);
    const morning = await subscriber(server, [4]);
    const afternoon = await subscriber(server, [5]);
    expect(morning.messages.find((m) => m.type === 'subscribed')?.snapshot).toEqual([
      expect.objectContaining({ ts: 1_500, label: 'morning #9' }),
    ]);
    expect(afternoon.messages.find((m) => m.type === 'subscribed')?.snapshot).toEqual([]);

    // One read: the same frame per event carries every position of it, so what is in it is all it gets.
    server.hub.onPositions([
      position(SHARED_TRACKER, 1_999),
      position(SHARED_TRACKER, 2_000),
      position(SHARED_TRACKER, 2_500),
      position('356307040000010', 1_700),
      position('356307040000011', 2_700),
    ]);
    await waitFor(
      'both have their frame',
      () => morning.framesOf('positions').length === 1 && afternoon.framesOf('positions').length === 1,
    );
    expect(morning.positions(4).map((p) => [p.device_id, p.ts, p.label])).toEqual([
      [SHARED_TRACKER, 1_999, 'morning #9'],
      ['356307040000010', 1_700, 'morning #10'],
    ]);
    expect(afternoon.positions(5).map((p) => [p.device_id, p.ts, p.label])).toEqual([
      [SHARED_TRACKER, 2_000, 'afternoon #9'],
      [SHARED_TRACKER, 2_500, 'afternoon #9'],
      ['356307040000011', 2_700, 'afternoon #11'],
    ]);

    // The snapshot of a new morning viewer keeps to the morning too (the tracker's newest position is the afternoon's).
    const lateMorning = await subscriber(server, [4]);
    expect(lateMorning.messages.find((m) => m.type === 'subscribed')?.snapshot).toEqual([
      expect.objectContaining({ device_id: '356307040000010', ts: 1_700 }),
    ]);
    await Promise.all([morning, afternoon, lateMorning].map((c) => c.close()));
  });
});
