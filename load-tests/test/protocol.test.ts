import { backoffDelayMs, RETRYABLE_ERROR_CODES, TOKEN_ERROR_CODES } from '@pitwall/live-protocol';
import { describe, expect, it } from 'vitest';
import {
  ViewerFlow,
  authMessage,
  parseServerFrame,
  receivedAtOf,
  refreshAtMs,
  subscribeMessage,
  type ServerFrame,
  type TokenRefresher,
  type ViewerFlowHost,
} from '../src/protocol.js';

describe('the viewer side of the WebSocket protocol', () => {
  it('sends auth and subscribe as the contract spells them', () => {
    expect(JSON.parse(authMessage('jwt'))).toEqual({ type: 'auth', access_token: 'jwt' });
    expect(JSON.parse(subscribeMessage(42, 'u1'))).toEqual({ type: 'subscribe', event_id: 42, uid: 'u1' });
  });

  it('reads every server frame of the contract', () => {
    expect(parseServerFrame('{"type":"auth","status":"ok","expires_at":1700000000000}')).toMatchObject({
      type: 'auth',
      status: 'ok',
      expires_at: 1700000000000,
    });
    const position = {
      device_id: '356307040000001',
      label: '#1',
      ts: 1,
      lat: 1,
      lon: 2,
      alt: 3,
      speed: 4,
      heading: 5,
      sats: 6,
      rx: 1700000000123,
    };
    expect(parseServerFrame(JSON.stringify({ type: 'subscribed', event_id: 42, uid: 'u1', snapshot: [position] }))).toMatchObject({
      type: 'subscribed',
      event_id: 42,
      uid: 'u1',
    });
    const frame = parseServerFrame(JSON.stringify({ type: 'positions', event_id: 42, positions: [position, { nope: true }] }));
    expect(frame?.type).toBe('positions');
    if (frame?.type !== 'positions') return;
    expect(frame.positions.map(receivedAtOf)).toEqual([1700000000123, undefined]);
    expect(parseServerFrame('{"type":"unsubscribed","event_id":42,"reason":"forbidden"}')).toMatchObject({ reason: 'forbidden' });
    expect(parseServerFrame('{"type":"error","code":"token_expired","message":"renew"}')).toMatchObject({
      type: 'error',
      code: 'token_expired',
    });
    expect(parseServerFrame('{"type":"pong"}')).toEqual({ type: 'pong' });
  });

  it('ignores what is not a frame of the protocol', () => {
    for (const text of ['', 'not json', '[]', '{"type":"mystery"}', '{"type":"positions","positions":3}', 'null']) {
      expect(parseServerFrame(text), text).toBeUndefined();
    }
  });
});

// A host whose clock only moves when the test says so: the flow's timers are plain entries here.
class ScriptedHost implements ViewerFlowHost {
  readonly sent: unknown[] = [];
  readonly events: string[] = [];
  readonly latencies: number[] = [];
  open = true;
  private now = 0;
  private timers: { at: number; run: () => void; cancelled: boolean }[] = [];

  send(text: string): void {
    this.sent.push(JSON.parse(text));
  }
  isOpen(): boolean {
    return this.open;
  }
  close(): void {
    this.events.push('close');
    this.open = false;
  }
  schedule(run: () => void, ms: number): () => void {
    const timer = { at: this.now + ms, run, cancelled: false };
    this.timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }
  snapshot(elapsedMs: number): void {
    this.events.push(`snapshot ${elapsedMs}`);
  }
  delivery(latencyMs: number): void {
    this.latencies.push(latencyMs);
  }
  positionsFrame(positions: number): void {
    this.events.push(`positions ${positions}`);
  }
  error(code: string): void {
    this.events.push(`error ${code}`);
  }
  refreshed(ok: boolean): void {
    this.events.push(`refreshed ${ok}`);
  }
  retried(): void {
    this.events.push('retried');
  }
  readonly delays: number[] = [];
  readonly errorCodes = { retryable: RETRYABLE_ERROR_CODES, token: TOKEN_ERROR_CODES };
  retryDelayMs(attempt: number, retryAfterMs: number | undefined): number {
    const delay = backoffDelayMs(attempt, retryAfterMs);
    this.delays.push(delay);
    return delay;
  }
  advance(ms: number): void {
    this.now += ms;
    for (const timer of this.timers.filter((t) => !t.cancelled && t.at <= this.now)) {
      timer.cancelled = true;
      timer.run();
    }
  }
}

// Lets the promise callbacks of a renewal run.
function settled(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function frame(value: object): ServerFrame {
  const parsed = parseServerFrame(JSON.stringify(value));
  if (!parsed) throw new Error(`not a frame: ${JSON.stringify(value)}`);
  return parsed;
}

function startFlow(host: ScriptedHost, refresher?: TokenRefresher): ViewerFlow {
  return new ViewerFlow(
    { accessToken: 'jwt-1', eventId: 42, uid: 's1', startedAt: 1_000, untilMs: 61_000, snapshotTimeoutMs: 10_000, refresher },
    host,
  );
}

describe('the viewer session flow shared by k6 and the Node harness', () => {
  it('refreshes a token its lead time before expiry, or halfway when it has less than twice that left', () => {
    expect(refreshAtMs(0, 900_000, 30)).toBe(870_000);
    expect(refreshAtMs(0, 40_000, 30)).toBe(20_000);
    expect(refreshAtMs(10_000, 5_000, 30)).toBe(10_000);
  });

  it('authenticates first, subscribes once authenticated, measures the snapshot and each delivery', () => {
    const host = new ScriptedHost();
    const flow = startFlow(host);
    flow.opened();
    expect(host.sent).toEqual([{ type: 'auth', access_token: 'jwt-1' }]);
    flow.frame(frame({ type: 'auth', status: 'ok' }), 1_100);
    expect(host.sent[1]).toEqual({ type: 'subscribe', event_id: 42, uid: 's1' });
    flow.frame(frame({ type: 'auth', status: 'ok' }), 1_150);
    expect(host.sent).toHaveLength(2);
    flow.frame(frame({ type: 'subscribed', event_id: 42, uid: 's1', snapshot: [] }), 1_300);
    flow.frame(frame({ type: 'positions', event_id: 42, positions: [{ rx: 1_250 }, { nope: 1 }, { rx: 1_200 }] }), 1_400);
    expect(host.events).toEqual(['snapshot 300', 'positions 2']);
    expect(host.latencies).toEqual([150, 200]);
    host.advance(60_000);
    expect(host.events.at(-1)).toBe('close');
    expect(flow.closed()).toEqual({ gotSnapshot: true, failed: false, closedByServer: false, lastError: undefined });
  });

  it('fails a session with no snapshot in time, or one the server closed', () => {
    const slow = new ScriptedHost();
    const noSnapshot = startFlow(slow);
    noSnapshot.opened();
    slow.advance(10_000);
    expect(slow.events).toEqual(['close']);
    expect(noSnapshot.closed()).toMatchObject({ gotSnapshot: false, failed: true, closedByServer: false });

    const dropped = new ScriptedHost();
    const closedByServer = startFlow(dropped);
    closedByServer.frame(frame({ type: 'subscribed', event_id: 42, snapshot: [] }), 2_000);
    closedByServer.socketError('ECONNRESET');
    expect(closedByServer.closed()).toEqual({ gotSnapshot: true, failed: true, closedByServer: true, lastError: 'ECONNRESET' });
  });

  it('asks again after a retryable error and gives up on a refusal', () => {
    const host = new ScriptedHost();
    const flow = startFlow(host);
    flow.opened();
    flow.frame(frame({ type: 'auth', status: 'ok' }), 1_100);
    flow.frame(frame({ type: 'error', code: 'authorization_unavailable', message: 'busy' }), 1_200);
    expect(host.events).toEqual(['error authorization_unavailable', 'retried']);
    host.advance(1_500);
    expect(host.sent.at(-1)).toEqual({ type: 'subscribe', event_id: 42, uid: 's1' });

    const refused = new ScriptedHost();
    const forbidden = startFlow(refused);
    forbidden.frame(frame({ type: 'error', code: 'forbidden', message: 'no' }), 1_100);
    expect(refused.events).toEqual(['error forbidden', 'close']);
    expect(forbidden.closed()).toMatchObject({ failed: true, lastError: 'forbidden' });

    const lost = new ScriptedHost();
    const unsubscribed = startFlow(lost);
    unsubscribed.frame(frame({ type: 'subscribed', event_id: 42, snapshot: [] }), 1_100);
    unsubscribed.frame(frame({ type: 'unsubscribed', event_id: 42, reason: 'forbidden' }), 1_200);
    expect(unsubscribed.closed()).toMatchObject({ gotSnapshot: true, failed: true });
  });

  it("waits at least the server's retry_after_ms, with jitter, and backs off further on each retry", () => {
    const host = new ScriptedHost();
    const flow = startFlow(host);
    flow.opened();
    flow.frame(frame({ type: 'auth', status: 'ok' }), 1_100);
    const subscribes = () => host.sent.filter((m) => (m as { type?: string }).type === 'subscribe').length;
    flow.frame(frame({ type: 'error', code: 'authorization_unavailable', message: 'busy', retry_after_ms: 3_000 }), 1_200);
    expect(host.delays[0]).toBeGreaterThanOrEqual(3_000);
    expect(host.delays[0]).toBeLessThanOrEqual(4_500);
    host.advance(2_999);
    expect(subscribes()).toBe(1);
    host.advance((host.delays[0] ?? 0) - 2_999);
    expect(subscribes()).toBe(2);
    // Hints shorter than the doubling delay: the second and third retries wait at least 1 s and 2 s.
    flow.frame(frame({ type: 'error', code: 'rate_limited', message: 'slow down', retry_after_ms: 10 }), 1_300);
    flow.frame(frame({ type: 'error', code: 'rate_limited', message: 'slow down', retry_after_ms: 10 }), 1_400);
    expect(host.delays[1]).toBeGreaterThanOrEqual(1_000);
    expect(host.delays[2]).toBeGreaterThanOrEqual(2_000);
  });

  it('renews the token before it expires and reports whether the gateway took it', async () => {
    const host = new ScriptedHost();
    let renewals = 0;
    const flow = startFlow(host, { leadSeconds: 30, renew: () => Promise.resolve(`jwt-${++renewals + 1}`) });
    flow.opened();
    flow.frame(frame({ type: 'auth', status: 'ok', expires_at: Date.now() + 60_000 }), 1_100);
    flow.frame(frame({ type: 'subscribed', event_id: 42, snapshot: [] }), 1_200);
    host.advance(29_000);
    expect(renewals).toBe(0);
    host.advance(2_000);
    await settled();
    expect(renewals).toBe(1);
    expect(host.sent.at(-1)).toEqual({ type: 'auth', access_token: 'jwt-2' });
    flow.frame(frame({ type: 'auth', status: 'ok' }), 32_000);
    expect(host.events).toEqual(['snapshot 200', 'refreshed true']);

    const refusing = new ScriptedHost();
    const refused = startFlow(refusing, { leadSeconds: 30, renew: () => Promise.reject(new Error('invalid refresh token')) });
    refused.frame(frame({ type: 'auth', status: 'ok', expires_at: Date.now() + 60_000 }), 1_100);
    refused.frame(frame({ type: 'subscribed', event_id: 42, snapshot: [] }), 1_200);
    refusing.advance(31_000);
    await settled();
    expect(refusing.events).toEqual(['snapshot 200', 'refreshed false']);
    expect(refused.closed().lastError).toMatch(/invalid refresh token/);
  });
});
