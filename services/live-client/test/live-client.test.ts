import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, type ClientMessage, type ServerMessage, type WirePosition } from '@pitwall/live-protocol';
import { LiveClient, type ClientError, type LiveClientOptions, type PositionsEvent, type SubscribedEvent } from '../src/index.js';
import type { Clock, SocketLike } from '../src/runtime.js';

// The client against scripted sockets and a scripted clock: every delay is a number the test reads,
// nothing waits for real time.

class ScriptedClock implements Clock {
  private time = 1_000_000;
  private timers: { at: number; seq: number; callback: () => void }[] = [];
  private seq = 0;

  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const timer = { at: this.time + ms, seq: this.seq++, callback };
    this.timers.push(timer);
    return timer;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t !== handle);
  }
  /** Moves time forward by `ms`, running every timer due on the way (and the promises they start). */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (next === undefined || next.at > end) break;
      this.timers.shift();
      this.time = next.at;
      next.callback();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

class ScriptedSocket implements SocketLike {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: ClientMessage[] = [];
  closedByClient: number | undefined;
  constructor(readonly url: string) {}
  send(data: string): void {
    this.sent.push(JSON.parse(data) as ClientMessage);
  }
  close(code?: number): void {
    this.closedByClient = code;
    this.readyState = 3;
  }
  async open(): Promise<void> {
    this.readyState = 1;
    this.onopen?.({});
    await settle();
  }
  async receive(message: ServerMessage): Promise<void> {
    this.onmessage?.({ data: JSON.stringify(message) });
    await settle();
  }
  async serverClose(code: number): Promise<void> {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
    await settle();
  }
}

function position(deviceId: string, ts: number): WirePosition {
  return { device_id: deviceId, label: deviceId, ts, lat: 1, lon: 2, alt: 3, speed: 4, heading: 5, sats: 6, rx: ts };
}

interface Harness {
  client: LiveClient;
  clock: ScriptedClock;
  sockets: ScriptedSocket[];
  last(): ScriptedSocket;
  errors: ClientError[];
  subscribed: SubscribedEvent[];
  positions: PositionsEvent[];
  tokens: string[];
}

function harness(options: Partial<LiveClientOptions> = {}): Harness {
  const clock = new ScriptedClock();
  const sockets: ScriptedSocket[] = [];
  let issued = 0;
  const tokens: string[] = [];
  const client = new LiveClient({
    url: ['ws://gw-1/live', 'ws://gw-2/live'],
    token: () => {
      const token = `token-${++issued}`;
      tokens.push(token);
      return token;
    },
    socket: (url) => {
      const socket = new ScriptedSocket(url);
      sockets.push(socket);
      return socket;
    },
    clock,
    random: () => 0,
    heartbeatMs: 0,
    ...options,
  });
  const h: Harness = {
    client,
    clock,
    sockets,
    last: () => {
      const socket = sockets[sockets.length - 1];
      if (socket === undefined) throw new Error('no socket opened');
      return socket;
    },
    errors: [],
    subscribed: [],
    positions: [],
    tokens,
  };
  client.on('error', (e) => h.errors.push(e));
  client.on('subscribed', (e) => h.subscribed.push(e));
  client.on('positions', (e) => h.positions.push(e));
  return h;
}

/** Opens the latest socket and answers its auth. */
async function authenticate(h: Harness, expiresAt = h.clock.now() + 15 * 60_000): Promise<ScriptedSocket> {
  const socket = h.last();
  await socket.open();
  expect(socket.sent[0]).toMatchObject({ type: 'auth' });
  await socket.receive({ type: 'auth', status: 'ok', expires_at: expiresAt, uid: 'auth' });
  return socket;
}

describe('live client', () => {
  it('authenticates, subscribes (asking for trails the first time), and hands out snapshot, history and positions', async () => {
    const h = harness();
    h.client.subscribe(7, { historySeconds: 60 });
    h.client.start();
    const socket = await authenticate(h);
    expect(socket.sent).toEqual([
      { type: 'auth', access_token: 'token-1', uid: 'auth' },
      { type: 'subscribe', event_id: 7, uid: 's7', history_seconds: 60 },
    ]);
    expect(h.client.state).toBe('open');
    await socket.receive({
      type: 'subscribed',
      event_id: 7,
      uid: 's7',
      snapshot: [position('a', 5)],
      history: [position('a', 4)],
      cursor: 'c0',
    });
    expect(h.subscribed).toEqual([{ eventId: 7, recovered: undefined, snapshot: [position('a', 5)], history: [position('a', 4)] }]);
    await socket.receive({ type: 'positions', event_id: 7, positions: [position('a', 6), position('b', 1)], cursor: 'c1' });
    expect(h.positions).toEqual([{ eventId: 7, positions: [position('a', 6), position('b', 1)], cursor: 'c1' }]);
    expect(h.client.cursorOf(7)).toBe('c1');
  });

  it('moves to the other gateway on 1001 within the jitter, and resumes every subscription from its last cursor', async () => {
    const h = harness({ random: () => 0.5, elsewhereJitterMs: 1_000 });
    h.client.subscribe(7, { historySeconds: 60 });
    h.client.subscribe(8);
    h.client.start();
    const first = await authenticate(h);
    expect(first.url).toBe('ws://gw-1/live');
    await first.receive({ type: 'subscribed', event_id: 7, snapshot: [], cursor: 'c0' });
    await first.receive({ type: 'subscribed', event_id: 8, snapshot: [], cursor: 'd0' });
    await first.receive({ type: 'positions', event_id: 7, positions: [position('a', 6)], cursor: 'c1' });
    await first.serverClose(CLOSE_CODES.goingAway);
    expect(h.client.state).toBe('waiting');
    await h.clock.advance(499);
    expect(h.sockets).toHaveLength(1);
    await h.clock.advance(1);
    expect(h.sockets).toHaveLength(2);
    const second = await authenticate(h);
    expect(second.url).toBe('ws://gw-2/live');
    expect(second.sent.slice(1)).toEqual([
      { type: 'subscribe', event_id: 7, uid: 's7', since: 'c1', history_seconds: 60 },
      { type: 'subscribe', event_id: 8, uid: 's8', since: 'd0' },
    ]);
    await second.receive({ type: 'subscribed', event_id: 7, snapshot: [], recovered: true, cursor: 'c1' });
    // A position it already had (a pod's duplicate) is dropped; newer ones pass.
    await second.receive({ type: 'positions', event_id: 7, positions: [position('a', 6), position('a', 7)], cursor: 'c2' });
    expect(h.positions[h.positions.length - 1]?.positions).toEqual([position('a', 7)]);
    expect(h.client.stats()).toMatchObject({ recovered: 1, duplicatesDropped: 1, connections: 2 });
  });

  it("spreads its reconnect over the gateway's going_away window, once: a later 1001 without one uses its own jitter", async () => {
    const h = harness({ random: () => 0.5, elsewhereJitterMs: 1_000 });
    h.client.subscribe(7);
    h.client.start();
    const first = await authenticate(h);
    await first.receive({ type: 'subscribed', event_id: 7, snapshot: [], cursor: 'c0' });
    await first.receive({ type: 'error', code: 'going_away', message: 'server going away', reconnect_within_ms: 8_000 });
    expect(h.errors).toEqual([]);
    await first.serverClose(CLOSE_CODES.goingAway);
    await h.clock.advance(3_999);
    expect(h.sockets).toHaveLength(1);
    await h.clock.advance(1);
    expect(h.sockets).toHaveLength(2);
    const second = await authenticate(h);
    await second.receive({ type: 'subscribed', event_id: 7, snapshot: [], recovered: true, cursor: 'c0' });
    await second.serverClose(CLOSE_CODES.goingAway);
    await h.clock.advance(499);
    expect(h.sockets).toHaveLength(2);
    await h.clock.advance(1);
    expect(h.sockets).toHaveLength(3);
  });

  it('backs off exponentially on failed connections and starts over after a success', async () => {
    const h = harness();
    const delays: number[] = [];
    h.client.on('reconnecting', (e) => delays.push(e.delayMs));
    h.client.start();
    for (let i = 0; i < 4; i++) {
      await h.last().serverClose(1006);
      await h.clock.advance(delays[delays.length - 1] ?? 0);
    }
    expect(delays).toEqual([500, 1_000, 2_000, 4_000]);
    // Never opened: each failure tries the next gateway.
    expect(h.sockets.map((s) => s.url)).toEqual(['ws://gw-1/live', 'ws://gw-2/live', 'ws://gw-1/live', 'ws://gw-2/live', 'ws://gw-1/live']);
    await authenticate(h);
    await h.last().serverClose(1006);
    expect(delays[delays.length - 1]).toBe(500);
  });

  it('retries a subscribe refused as retryable no sooner than retry_after_ms, and gives up on forbidden', async () => {
    const h = harness();
    h.client.subscribe(7);
    h.client.subscribe(9);
    h.client.start();
    const socket = await authenticate(h);
    await socket.receive({
      type: 'error',
      code: 'authorization_unavailable',
      message: 'busy',
      event_id: 7,
      uid: 's7',
      retry_after_ms: 3_000,
    });
    await socket.receive({ type: 'error', code: 'forbidden', message: 'no', event_id: 9, uid: 's9' });
    const subscribesOf7 = () => socket.sent.filter((m) => m.type === 'subscribe' && m.event_id === 7).length;
    expect(subscribesOf7()).toBe(1);
    await h.clock.advance(2_999);
    expect(subscribesOf7()).toBe(1);
    await h.clock.advance(1);
    expect(subscribesOf7()).toBe(2);
    expect(h.errors.map((e) => [e.code, e.fatal])).toEqual([
      ['authorization_unavailable', false],
      ['forbidden', true],
    ]);
    // Event 9 is gone: not subscribed again after a reconnect.
    await socket.serverClose(1006);
    await h.clock.advance(500);
    const next = await authenticate(h);
    expect(next.sent.filter((m) => m.type === 'subscribe').map((m) => (m.type === 'subscribe' ? m.event_id : 0))).toEqual([7]);
  });

  it('refreshes the token before it expires, on token_expired, and after 4401; stops when the refresh is refused', async () => {
    let refreshes = 0;
    let refuse = false;
    const h = harness({
      refreshBeforeExpiryMs: 60_000,
      refreshToken: () => (refuse ? Promise.reject(new Error('refresh token expired')) : Promise.resolve(`fresh-${++refreshes}`)),
    });
    h.client.start();
    const socket = await authenticate(h, h.clock.now() + 120_000);
    await h.clock.advance(59_999);
    expect(socket.sent.filter((m) => m.type === 'auth')).toHaveLength(1);
    await h.clock.advance(1);
    expect(socket.sent[socket.sent.length - 1]).toEqual({ type: 'auth', access_token: 'fresh-1', uid: 'auth' });
    await socket.receive({ type: 'error', code: 'token_expired', message: 'expired' });
    expect(socket.sent[socket.sent.length - 1]).toEqual({ type: 'auth', access_token: 'fresh-2', uid: 'auth' });

    await socket.serverClose(CLOSE_CODES.unauthenticated);
    await h.clock.advance(500);
    const next = h.last();
    await next.open();
    expect(next.sent[0]).toEqual({ type: 'auth', access_token: 'fresh-3', uid: 'auth' });
    await next.receive({ type: 'auth', status: 'ok', expires_at: h.clock.now() + 120_000, uid: 'auth' });

    refuse = true;
    await next.serverClose(CLOSE_CODES.unauthenticated);
    expect(h.client.state).toBe('stopped');
    expect(h.errors[h.errors.length - 1]).toMatchObject({ code: 'refresh_failed', fatal: true });
    await h.clock.advance(60_000);
    expect(h.sockets).toHaveLength(2);
  });

  it('stops on a protocol violation close (a client bug) instead of looping', async () => {
    const h = harness();
    h.client.start();
    await (await authenticate(h)).serverClose(CLOSE_CODES.protocolViolation);
    expect(h.client.state).toBe('stopped');
    await h.clock.advance(60_000);
    expect(h.sockets).toHaveLength(1);
  });

  it('replaces a connection that went silent (heartbeat)', async () => {
    const h = harness({ heartbeatMs: 10_000 });
    h.client.start();
    const socket = await authenticate(h);
    await h.clock.advance(10_000);
    expect(socket.sent[socket.sent.length - 1]).toEqual({ type: 'ping' });
    await socket.receive({ type: 'pong' });
    await h.clock.advance(20_000);
    expect(socket.closedByClient).toBeUndefined();
    await h.clock.advance(10_000);
    expect(socket.closedByClient).toBe(4000);
    await h.clock.advance(500);
    expect(h.sockets).toHaveLength(2);
  });

  it('remembers at most maxDevicesPerEvent devices per event', async () => {
    const h = harness({ maxDevicesPerEvent: 2 });
    h.client.subscribe(1);
    h.client.start();
    const socket = await authenticate(h);
    await socket.receive({ type: 'subscribed', event_id: 1, snapshot: [] });
    await socket.receive({
      type: 'positions',
      event_id: 1,
      positions: [position('a', 5), position('b', 5), position('c', 5)],
      cursor: 'x',
    });
    // `a` was forgotten (the oldest): its repeat passes; `c` is remembered: its repeat is dropped.
    await socket.receive({ type: 'positions', event_id: 1, positions: [position('a', 5), position('c', 5)], cursor: 'y' });
    expect(h.positions[1]?.positions).toEqual([position('a', 5)]);
  });

  it('unsubscribes and closes on request, and sends nothing while disconnected', async () => {
    const h = harness();
    h.client.subscribe(3);
    h.client.start();
    const socket = await authenticate(h);
    h.client.unsubscribe(3);
    expect(socket.sent[socket.sent.length - 1]).toEqual({ type: 'unsubscribe', event_id: 3, uid: 'u3' });
    h.client.close();
    expect(socket.closedByClient).toBe(1000);
    expect(h.client.state).toBe('idle');
    h.client.subscribe(4);
    await h.clock.advance(60_000);
    expect(h.sockets).toHaveLength(1);
  });
});
