import uWS from 'uWebSockets.js';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetricsRegistry } from '@pitwall/platform';
import { waitFor } from '@pitwall/testkit';
import { EventDirectory, type EventDevice, type EventEntries } from '../src/events/event-directory.js';
import type { HubClient } from '../src/fanout/hub-client.js';
import { LatestPositions } from '../src/fanout/latest-positions.js';
import { LiveHub } from '../src/fanout/live-hub.js';
import { parseEntryId } from '../src/history/entry-id.js';
import { PositionHistory } from '../src/history/position-history.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { positionPrefix, type LivePosition } from '../src/protocol/position-json.js';
import { UwsTransport } from '../src/server/uws-transport.js';
import { TestClient, type WirePosition } from './support/client.js';
import { testDirectusClient } from './support/directus-client.js';

// Resume and trails across two "pods": two hubs with their own histories, fed the same stream entries
// (the same ids on every pod, as two gateways reading the same shards). Real uWS sockets, no Directus:
// subscriptions go through the hub as the session does after authorization.

const SHARDS = 2;
const ALWAYS = { fromMs: Number.NEGATIVE_INFINITY, toMs: Number.POSITIVE_INFINITY };

function device(deviceId: string, label: string): EventDevice {
  return { deviceId, label, prefix: positionPrefix(deviceId, label) };
}

const EVENT: EventEntries = { devices: [device('356307040000001', '#1'), device('356307040000002', '#2')], ...ALWAYS };
const OTHER = '356307040000099';

/** One stream entry: device, shard (source) and entry id; ts is the id's ms (device time). */
interface Entry {
  deviceId: string;
  source: number;
  id: string;
}

function livePosition(entry: Entry): LivePosition {
  const id = parseEntryId(entry.id);
  if (id === undefined) throw new Error(`bad id ${entry.id}`);
  const ts = id.ms * 10 + id.seq;
  return {
    deviceId: entry.deviceId,
    ts,
    rx: ts,
    body: `"ts":${ts},"lat":54.1,"lon":25.2,"alt":1,"speed":2,"heading":3,"sats":4,"rx":${ts}}`,
    source: entry.source,
    id,
  };
}

class SocketClient implements HubClient {
  transport: UwsTransport<{ client: SocketClient }> | undefined;
  constructor(
    readonly id: number,
    readonly since: string | undefined,
    readonly historySeconds: number | undefined,
  ) {}
  disconnect(): void {
    this.transport?.terminate();
  }
}

interface Pod {
  hub: LiveHub;
  history: PositionHistory;
  metrics: ReturnType<typeof createGatewayMetrics>;
  url: string;
  feed(entries: readonly Entry[]): void;
  close(): void;
}

const pods: Pod[] = [];
afterEach(() => {
  for (const pod of pods.splice(0)) pod.close();
});

async function startPod(options: { windowMs?: number; startMs?: number; batchWindowMs?: number } = {}): Promise<Pod> {
  const app = uWS.App();
  const metrics = createGatewayMetrics(createMetricsRegistry());
  const directory = new EventDirectory(testDirectusClient('http://127.0.0.1:9'), 'unused', metrics, 60_000, 0);
  const history = new PositionHistory({ shards: SHARDS, sources: SHARDS, windowMs: options.windowMs ?? 120_000, maxBytes: 1 << 28 });
  for (let source = 0; source < SHARDS; source++) history.start(source, { ms: options.startMs ?? 1, seq: 0 });
  const hub = new LiveHub(app, directory, new LatestPositions(1_000), metrics, {
    batchWindowMs: options.batchWindowMs ?? 0,
    conflateBufferBytes: 4 * 1024 * 1024,
    slowClientTimeoutMs: 60_000,
    history,
    resumeWaitMs: 5_000,
  });
  let nextId = 1;
  app.ws<{ client: SocketClient }>('/live', {
    upgrade: (res, req, context) => {
      const since = req.getQuery('since');
      const historySeconds = req.getQuery('history');
      res.upgrade(
        {
          client: new SocketClient(nextId++, since === '' ? undefined : since, historySeconds === '' ? undefined : Number(historySeconds)),
        },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      const { client } = ws.getUserData();
      client.transport = new UwsTransport(ws);
      const request = { since: client.since, historySeconds: client.historySeconds };
      // As the session does: a cursor ahead of this pod waits for it, then the hub answers.
      void (client.since === undefined ? Promise.resolve() : hub.whenCaughtUp(client.since)).then(() => {
        if (client.transport !== undefined) hub.join(client, 1, EVENT, 'sub', request);
      });
    },
    close: (ws) => {
      const { client } = ws.getUserData();
      client.transport = undefined;
      hub.removeClient(client);
    },
  });
  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (socket) => (socket === false ? reject(new Error('listen failed')) : resolve(socket))),
  );
  const pod: Pod = {
    hub,
    history,
    metrics,
    url: `ws://127.0.0.1:${uWS.us_socket_local_port(listenSocket)}/live`,
    feed: (entries) => hub.onPositions(entries.map(livePosition)),
    close: () => uWS.us_listen_socket_close(listenSocket),
  };
  pods.push(pod);
  return pod;
}

/** Entries for ms `fromMs`..: the two cars of the event alternating over both shards, plus a car of no event. */
function entries(fromMs: number, count: number): Entry[] {
  const list: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const car = EVENT.devices[i % 2]?.deviceId ?? '';
    list.push({ deviceId: car, source: i % 2, id: `${fromMs + i}-0` });
    if (i % 3 === 0) list.push({ deviceId: OTHER, source: (i + 1) % 2, id: `${fromMs + i}-1` });
  }
  return list;
}

function expectedOf(list: readonly Entry[]): string[] {
  return list.filter((e) => e.deviceId !== OTHER).map((e) => `${e.deviceId}@${livePosition(e).ts}`);
}

const seen = (positions: readonly WirePosition[]) => positions.map((p) => `${p.device_id}@${p.ts}`);

async function connect(pod: Pod, query: Record<string, string> = {}): Promise<{ client: TestClient; subscribed: Record<string, unknown> }> {
  const params = new URLSearchParams(query).toString();
  const client = await TestClient.open(`${pod.url}${params === '' ? '' : `?${params}`}`);
  const subscribed = await client.expect((m) => m.type === 'subscribed', 'subscribed');
  return { client, subscribed };
}

/** The cursor of the last frame (or of the reply, when no frame came). */
function lastCursor(client: TestClient): string {
  const withCursor = client.messages.filter((m) => typeof m.cursor === 'string');
  return String(withCursor[withCursor.length - 1]?.cursor);
}

describe('resume from a cursor on another pod', () => {
  it('gets every position of the event exactly once and in order: missed ones first, then live', async () => {
    const [one, two] = [await startPod(), await startPod()];
    const feedBoth = (list: Entry[]) => {
      one.feed(list);
      two.feed(list);
    };
    const first = entries(1_000, 40);
    const missed = entries(2_000, 30);
    const live = entries(3_000, 20);

    const viewer = await connect(one);
    expect(viewer.subscribed).toMatchObject({ snapshot: [], cursor: expect.any(String) as string });
    feedBoth(first);
    await waitFor('first positions', () => viewer.client.positions(1).length === 40 || undefined);
    await viewer.client.close();
    const cursor = lastCursor(viewer.client);
    feedBoth(missed);

    const resumed = await connect(two, { since: cursor, history: '60' });
    // Recovered: no trail again (the client has it), the missed positions follow.
    expect(resumed.subscribed).toMatchObject({ type: 'subscribed', recovered: true, snapshot: [], history: [] });
    await waitFor('recovered positions', () => resumed.client.positions(1).length === 30 || undefined);
    feedBoth(live);
    await waitFor('live positions', () => resumed.client.positions(1).length === 50 || undefined);

    const all = [...seen(viewer.client.positions(1)), ...seen(resumed.client.positions(1))];
    expect(all).toEqual(expectedOf([...first, ...missed, ...live]));
    expect((await two.metrics.resumes.get()).values).toEqual([expect.objectContaining({ labels: { result: 'recoverable' }, value: 1 })]);
    await resumed.client.close();
  });

  it('viewers resuming from the same cursor each get the same missed positions; one resuming after more was read gets those too', async () => {
    const [one, two] = [await startPod(), await startPod()];
    const feedBoth = (list: Entry[]) => {
      one.feed(list);
      two.feed(list);
    };
    const first = entries(1_000, 10);
    const missed = entries(2_000, 12);
    const more = entries(3_000, 6);
    const viewer = await connect(one);
    feedBoth(first);
    await waitFor('first positions', () => viewer.client.positions(1).length === 10 || undefined);
    await viewer.client.close();
    const cursor = lastCursor(viewer.client);
    feedBoth(missed);

    // A storm: the same cursor several times while the pod reads nothing new (one recovery made, shared).
    const storm = await Promise.all([1, 2, 3].map(() => connect(two, { since: cursor })));
    for (const resumed of storm) {
      expect(resumed.subscribed).toMatchObject({ recovered: true, snapshot: [] });
      await waitFor('recovered positions', () => resumed.client.positions(1).length === 12 || undefined);
      expect(seen(resumed.client.positions(1))).toEqual(expectedOf(missed));
    }
    // Read on: a later resume from that cursor gets what was read meanwhile as well, once.
    feedBoth(more);
    for (const resumed of storm) await waitFor('live positions', () => resumed.client.positions(1).length === 18 || undefined);
    const late = await connect(two, { since: cursor });
    expect(late.subscribed).toMatchObject({ recovered: true });
    await waitFor('late recovery', () => late.client.positions(1).length === 18 || undefined);
    expect(seen(late.client.positions(1))).toEqual(expectedOf([...missed, ...more]));
    for (const resumed of storm) expect(seen(resumed.client.positions(1))).toEqual(expectedOf([...missed, ...more]));
    for (const client of [...storm, late]) await client.client.close();
  });

  it('waits for a pod that is behind the cursor, then recovers without repeating anything', async () => {
    const [ahead, behind] = [await startPod(), await startPod()];
    const first = entries(1_000, 10);
    const more = entries(2_000, 10);
    ahead.feed(first);
    behind.feed(first);
    const viewer = await connect(ahead);
    ahead.feed(more);
    await waitFor('positions', () => viewer.client.positions(1).length === 10 || undefined);
    await viewer.client.close();

    const resumed = TestClient.open(`${behind.url}?since=${encodeURIComponent(lastCursor(viewer.client))}`);
    const client = await resumed;
    // The pod behind has not read `more` yet: no reply until it has.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(client.messages).toEqual([]);
    behind.feed(more);
    expect(await client.expect((m) => m.type === 'subscribed', 'subscribed')).toMatchObject({ recovered: true });
    const after = entries(3_000, 4);
    ahead.feed(after);
    behind.feed(after);
    await waitFor('live', () => client.positions(1).length === 4 || undefined);
    expect([...seen(viewer.client.positions(1)), ...seen(client.positions(1))]).toEqual(expectedOf([...more, ...after]));
    await client.close();
  });

  it('answers recovered:false with the snapshot when the cursor is older than what the pod holds', async () => {
    const pod = await startPod({ windowMs: 5_000 });
    const now = Date.now();
    pod.feed(entries(now - 30_000, 10));
    const cursor = pod.history.cursor();
    // Missed by the client, then dropped by age.
    pod.feed(entries(now - 29_000, 10));
    const recent = entries(now - 1_000, 10);
    pod.feed(recent);
    const { client, subscribed } = await connect(pod, { since: cursor, history: '3600' });
    expect(subscribed).toMatchObject({ recovered: false });
    // The trail stands in for the gap, with the snapshot: what the pod still holds (its 5 s).
    expect(seen(subscribed.history as WirePosition[])).toEqual(expectedOf(recent));
    const lastOf = (car: number) => livePosition(recent.filter((e) => e.deviceId === EVENT.devices[car]?.deviceId).at(-1) as Entry).ts;
    expect(seen(subscribed.snapshot as WirePosition[]).sort()).toEqual(
      [`${EVENT.devices[0]?.deviceId}@${lastOf(0)}`, `${EVENT.devices[1]?.deviceId}@${lastOf(1)}`].sort(),
    );
    expect(client.positions(1)).toEqual([]);
    // A cursor of another deployment (shard count) is not recoverable either.
    const other = await connect(pod, { since: '1.4.1-0.1-0.1-0.1-0' });
    expect(other.subscribed).toMatchObject({ recovered: false });
    await client.close();
    await other.client.close();
  });

  it('carries the trail of the last history_seconds in the reply, then only newer positions', async () => {
    const pod = await startPod({ batchWindowMs: 60_000 });
    const now = Date.now();
    const old = entries(now - 100_000, 6);
    const recent = entries(now - 20_000, 8);
    pod.feed(old);
    pod.feed(recent);
    // Still pending in the batch window: it goes out before the reply, so it is in the trail, not after it.
    const pending = entries(now - 1_000, 2);
    pod.feed(pending);
    const { client, subscribed } = await connect(pod, { history: '30' });
    expect(seen(subscribed.history as WirePosition[])).toEqual(expectedOf([...recent, ...pending]));
    const later = entries(now, 2);
    pod.feed(later);
    pod.hub.flushAll();
    await waitFor('live', () => client.positions(1).length === 2 || undefined);
    expect(seen(client.positions(1))).toEqual(expectedOf(later));
    await client.close();
  });
});
