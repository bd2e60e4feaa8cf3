import { trace } from '@opentelemetry/api';
import type { EventsClaim } from '@pitwall/directus-events-claim';
import { CLOSE_CODES, type ServerMessage } from '@pitwall/live-protocol';
import { createLogger, createMetricsRegistry } from '@pitwall/platform';
import uWS from 'uWebSockets.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuthenticationError } from '../src/auth/authentication-error.js';
import type { Principal, TokenVerifier } from '../src/auth/token-verifier.js';
import { Authorizer, type AuthorizationDecision, type AuthorizationRequest } from '../src/authz/authorization.js';
import { ClaimAuthorizer } from '../src/authz/claim-authorizer.js';
import { DirectusUnavailableError } from '../src/directus/directus-unavailable-error.js';
import { EventDirectory, type EventEntries } from '../src/events/event-directory.js';
import { LatestPositions } from '../src/fanout/latest-positions.js';
import { LiveHub } from '../src/fanout/live-hub.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { positionPrefix } from '../src/protocol/position-json.js';
import { ClientSession, sessionRates, type SessionContext, type SessionLimits } from '../src/session/client-session.js';
import type { SessionTransport } from '../src/session/session-transport.js';
import { SharedDeadlines } from '../src/util/shared-deadlines.js';
import { testDirectusClient } from './support/directus-client.js';

// ClientSession without a socket: a recording transport, fake clocks, a verifier and an authorizer
// answering what each test says, and the real hub (on a uWS app that never listens).

class FakeTransport implements SessionTransport {
  readonly sent: ServerMessage[] = [];
  readonly topics = new Set<string>();
  buffered = 0;
  ended: { code: number; reason: string } | undefined;
  terminated = false;
  constructor(private readonly onClose: (code: number) => void) {}
  send(frame: string | Uint8Array): void {
    this.sent.push(JSON.parse(typeof frame === 'string' ? frame : Buffer.from(frame).toString('utf8')) as ServerMessage);
  }
  bufferedAmount(): number {
    return this.buffered;
  }
  end(code: number, reason: string): void {
    this.ended = { code, reason };
    this.onClose(code);
  }
  terminate(): void {
    this.terminated = true;
    this.onClose(CLOSE_CODES.abnormal);
  }
  subscribe(topic: string): void {
    this.topics.add(topic);
  }
  unsubscribe(topic: string): void {
    this.topics.delete(topic);
  }
  cork(fn: () => void): void {
    fn();
  }
  of(type: string): ServerMessage[] {
    return this.sent.filter((m) => m.type === type);
  }
}

/** A promise settled from outside. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const LIMITS: SessionLimits = {
  maxSubscriptions: 3,
  subscribeRatePerSecond: 100,
  authRatePerMinute: 6,
  maxProtocolErrors: 3,
  authTimeoutMs: 5_000,
  tokenExpiryGraceMs: 10_000,
  maxUnreadBytes: 64 * 1024,
  revalidateIntervalMs: 60_000,
};

const ENTRIES: EventEntries = {
  devices: [{ deviceId: 'dev-1', label: '#1', prefix: positionPrefix('dev-1', '#1') }],
  fromMs: Number.NEGATIVE_INFINITY,
  toMs: Number.POSITIVE_INFINITY,
};

interface Harness {
  session: ClientSession;
  transport: FakeTransport;
  hub: LiveHub;
  verify: ReturnType<typeof vi.fn<(token: string) => Promise<Principal>>>;
  decide: ReturnType<typeof vi.fn<(request: AuthorizationRequest) => Promise<AuthorizationDecision>>>;
  closes: number[];
  context: SessionContext;
  text(message: unknown): void;
}

/**
 * Tokens named `claim:1,2` carry `pitwall_events: [1, 2]`, `claim:partial:1` a partial claim of event 1;
 * every other token has no claim.
 */
function eventsClaimOf(token: string): EventsClaim | undefined {
  const match = /^claim:(partial:)?([\d,]*)/.exec(token);
  if (match === null) return undefined;
  return { events: (match[2] ?? '').split(',').filter(Boolean).map(Number), partial: match[1] !== undefined };
}

function principal(token: string, expiresAtMs = Date.now() + 600_000): Principal {
  return {
    userId: token.startsWith('other') ? 'user-b' : 'user-a',
    expiresAtMs,
    sessionKey: `t:${token}`,
    eventsClaim: eventsClaimOf(token),
  };
}

function harness(limits: Partial<SessionLimits> = {}, query?: { token: string; verified: Promise<Principal> }): Harness {
  const metrics = createGatewayMetrics(createMetricsRegistry());
  const directory = new EventDirectory(testDirectusClient('http://127.0.0.1:9'), 'unused', metrics, 60_000, 0);
  // (uWS needs a WebSocket route before its topics can be asked about.)
  const app = uWS.App().ws('/*', {});
  const hub = new LiveHub(app, directory, new LatestPositions(100), metrics, {
    batchWindowMs: 0,
    conflateBufferBytes: 64 * 1024,
    slowClientTimeoutMs: 30_000,
  });
  const verify = vi.fn((token: string) => Promise.resolve(principal(token)));
  if (query !== undefined) verify.mockReturnValueOnce(query.verified);
  const decide = vi.fn((_request: AuthorizationRequest) => Promise.resolve<AuthorizationDecision>({ result: 'allowed' }));
  const verifier: TokenVerifier = { verify };
  const context: SessionContext = {
    limits: { ...LIMITS, ...limits },
    rates: sessionRates({ ...LIMITS, ...limits }),
    verifier,
    // The gateway's order: the token's claim first, then "Directus" (what each test says).
    authorizer: new Authorizer([new ClaimAuthorizer(metrics), { name: 'test', decide }]),
    directory: { load: () => Promise.resolve(ENTRIES) },
    hub,
    metrics,
    logger: createLogger('test', 'silent'),
    tracer: trace.getTracer('test'),
    expiries: new SharedDeadlines((session) => session.onTokenExpired()),
    onAuthenticated: () => undefined,
  };
  const closes: number[] = [];
  const session = new ClientSession(1, '127.0.0.1', context, query?.token);
  const transport = new FakeTransport((code) => {
    closes.push(code);
    session.onClosed(code, '');
  });
  session.open(transport);
  return { session, transport, hub, verify, decide, closes, context, text: (m) => session.onText(JSON.stringify(m)) };
}

/** Lets promise callbacks run (fake timers leave microtasks alone). */
const settle = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers({ now: 1_750_000_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('client session: before authentication', () => {
  it('answers a ping before authentication with unauthenticated, not pong', async () => {
    const h = harness();
    h.text({ type: 'ping', uid: 'p' });
    await settle();
    expect(h.transport.sent).toEqual([expect.objectContaining({ type: 'error', code: 'unauthenticated', uid: 'p' })]);
  });

  it('closes a connection that sends more than its small budget before authenticating (4400)', async () => {
    const h = harness();
    for (let i = 0; i < 20; i++) h.text({ type: 'ping' });
    await settle();
    expect(h.transport.ended).toEqual({ code: 4400, reason: 'too many messages before authentication' });
    expect(h.transport.sent.length).toBeLessThanOrEqual(9);
  });

  it('closes with 4408 at the authentication deadline', async () => {
    const h = harness();
    await vi.advanceTimersByTimeAsync(LIMITS.authTimeoutMs);
    expect(h.transport.ended?.code).toBe(4408);
  });

  it('verifies one token at a time: auth messages sent together are handled one after another', async () => {
    const h = harness();
    const calls: ReturnType<typeof deferred<Principal>>[] = [];
    h.verify.mockImplementation(() => {
      const call = deferred<Principal>();
      calls.push(call);
      return call.promise;
    });
    for (let i = 0; i < 3; i++) h.text({ type: 'auth', access_token: `forged-${i}`, uid: i });
    await settle();
    expect(calls).toHaveLength(1);
    calls[0]?.reject(new AuthenticationError('refused'));
    await settle();
    // The first refusal closes the connection: the held ones are never verified.
    expect(h.transport.ended?.code).toBe(4401);
    expect(calls).toHaveLength(1);
  });

  it('handles requests sent while the query token is verified in order, once it is', async () => {
    const verifying = deferred<Principal>();
    const h = harness({}, { token: 'query-token', verified: verifying.promise });
    h.text({ type: 'subscribe', event_id: 5, uid: 's' });
    h.text({ type: 'ping', uid: 'p' });
    await settle();
    expect(h.transport.sent).toEqual([]);
    verifying.resolve(principal('query-token'));
    await settle();
    expect(h.verify).toHaveBeenCalledWith('query-token', h.session);
    // Nothing was answered before the token was; the subscribe's own reply comes once it is authorized.
    const replies = h.transport.sent.map((m) => [m.type, 'uid' in m ? m.uid : undefined]);
    expect(replies[0]).toEqual(['auth', undefined]);
    expect(replies.slice(1)).toEqual(
      expect.arrayContaining([
        ['pong', 'p'],
        ['subscribed', 's'],
      ]),
    );
    expect(h.decide).toHaveBeenCalledTimes(1);
  });

  it('says authorization_unavailable, keeps the socket, when the token cannot be verified now', async () => {
    const h = harness();
    h.verify.mockRejectedValueOnce(new DirectusUnavailableError('HTTP 429', 2_000));
    h.text({ type: 'auth', access_token: 't', uid: 'a' });
    await settle();
    expect(h.transport.sent).toEqual([
      expect.objectContaining({ type: 'error', code: 'authorization_unavailable', retry_after_ms: 2_000, uid: 'a' }),
    ]);
    expect(h.closes).toEqual([]);
    h.text({ type: 'auth', access_token: 't', uid: 'b' });
    await settle();
    expect(h.transport.of('auth')).toEqual([expect.objectContaining({ status: 'ok', uid: 'b' })]);
  });
});

describe('client session: authenticated', () => {
  async function authenticated(limits: Partial<SessionLimits> = {}, expiresAtMs?: number): Promise<Harness> {
    const h = harness(limits);
    if (expiresAtMs !== undefined) h.verify.mockImplementation((token) => Promise.resolve(principal(token, expiresAtMs)));
    h.text({ type: 'auth', access_token: 'token-a', uid: 'a' });
    await settle();
    expect(h.transport.of('auth')).toHaveLength(1);
    return h;
  }

  it('rate-limits auth messages and says when to try again', async () => {
    const h = await authenticated();
    for (let i = 0; i < 3; i++) h.text({ type: 'auth', access_token: `token-${i}`, uid: i });
    await settle();
    expect(h.transport.of('auth')).toHaveLength(3);
    expect(h.transport.of('error')).toEqual([expect.objectContaining({ code: 'rate_limited', uid: 2, retry_after_ms: 10_000 })]);
    expect(h.verify).toHaveBeenCalledTimes(3);
  });

  const subscribedIds = (h: Harness): unknown[] => h.transport.of('subscribed').map((m) => ('event_id' in m ? m.event_id : undefined));

  it('rate-limits subscribe requests: twice the rate at once, then the rate, and says when to try again', async () => {
    const h = await authenticated({ subscribeRatePerSecond: 2, maxSubscriptions: 20 });
    for (const id of [1, 2, 3, 4, 5]) h.text({ type: 'subscribe', event_id: id, uid: id });
    await settle();
    expect(subscribedIds(h)).toEqual([1, 2, 3, 4]);
    expect(h.transport.of('error')).toEqual([expect.objectContaining({ code: 'rate_limited', event_id: 5, retry_after_ms: 500 })]);
    await vi.advanceTimersByTimeAsync(499);
    h.text({ type: 'subscribe', event_id: 6, uid: 6 });
    await settle();
    expect(h.transport.of('error')).toEqual([
      expect.objectContaining({ code: 'rate_limited', event_id: 5, retry_after_ms: 500 }),
      expect.objectContaining({ code: 'rate_limited', event_id: 6 }),
    ]);
    await vi.advanceTimersByTimeAsync(1);
    h.text({ type: 'subscribe', event_id: 6, uid: 6 });
    await settle();
    expect(subscribedIds(h)).toEqual([1, 2, 3, 4, 6]);
  });

  it('drops a client that sends requests while not reading what it was sent', async () => {
    const h = await authenticated();
    h.transport.buffered = LIMITS.maxUnreadBytes + 1;
    h.text({ type: 'ping' });
    expect(h.transport.terminated).toBe(true);
    expect(h.transport.of('pong')).toEqual([]);
  });

  it('leaves the event topic the moment the token expires, and catches up once a fresh token arrives', async () => {
    const expiresAtMs = Date.now() + 5_000;
    const h = await authenticated({}, expiresAtMs);
    h.text({ type: 'subscribe', event_id: 7, uid: 's' });
    await settle();
    expect(h.transport.topics).toEqual(new Set(['event/7']));

    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.transport.of('error')).toEqual([expect.objectContaining({ code: 'token_expired' })]);
    expect(h.transport.topics).toEqual(new Set());
    h.hub.onPositions([{ deviceId: 'dev-1', ts: Date.now(), rx: Date.now(), body: `"ts":${Date.now()}}` }]);
    expect(h.transport.of('positions')).toEqual([]);
    h.text({ type: 'subscribe', event_id: 8, uid: 'late' });
    await settle();
    expect(h.transport.sent.at(-1)).toMatchObject({ type: 'error', code: 'token_expired', uid: 'late' });

    h.verify.mockImplementation((token) => Promise.resolve(principal(token)));
    h.text({ type: 'auth', access_token: 'token-b', uid: 'r' });
    await settle();
    expect(h.transport.topics).toEqual(new Set(['event/7']));
    expect(h.transport.of('positions')).toEqual([
      expect.objectContaining({ event_id: 7, positions: [expect.objectContaining({ device_id: 'dev-1' })] }),
    ]);
    await vi.advanceTimersByTimeAsync(LIMITS.tokenExpiryGraceMs * 2);
    expect(h.closes).toEqual([]);
  });

  it('waits on the shared expiry timers of the pod: one entry for the current token, none once closed', async () => {
    const h = await authenticated({}, Date.now() + 5_000);
    expect(h.context.expiries.timerCount).toBe(1);
    h.verify.mockImplementation((token) => Promise.resolve(principal(token, Date.now() + 9_000)));
    h.text({ type: 'auth', access_token: 'token-b', uid: 'r' });
    await settle();
    // The refreshed token's expiry replaced the old one: nothing fires at the old instant.
    expect(h.context.expiries.timerCount).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.transport.of('error')).toEqual([]);
    h.session.onClosed(1000, '');
    expect(h.context.expiries.timerCount).toBe(0);
  });

  it('closes with 4401 when no fresh token comes within the grace period', async () => {
    const h = await authenticated({}, Date.now() + 1_000);
    await vi.advanceTimersByTimeAsync(1_000 + LIMITS.tokenExpiryGraceMs);
    expect(h.transport.ended).toEqual({ code: 4401, reason: 'token expired' });
  });

  it('keeps no bookkeeping for unsubscribes of events it never had, and cancels a subscribe being authorized', async () => {
    const h = await authenticated();
    const decision = deferred<AuthorizationDecision>();
    h.decide.mockReturnValueOnce(decision.promise);
    h.text({ type: 'subscribe', event_id: 9, uid: 's' });
    await settle();
    h.text({ type: 'unsubscribe', event_id: 9, uid: 'u' });
    for (let id = 100; id < 200; id++) h.text({ type: 'unsubscribe', event_id: id });
    decision.resolve({ result: 'allowed' });
    await settle();
    expect(h.transport.sent.filter((m) => 'uid' in m && m.uid !== undefined).map((m) => [m.type, 'uid' in m ? m.uid : 0])).toEqual([
      ['auth', 'a'],
      ['unsubscribed', 'u'],
      ['unsubscribed', 's'],
    ]);
    expect(h.session.subscriptionCount).toBe(0);
    expect(h.transport.topics.size).toBe(0);
  });

  it('refuses subscriptions beyond the limit, counting those being authorized', async () => {
    const h = await authenticated();
    const waiting = deferred<AuthorizationDecision>();
    h.decide.mockReturnValue(waiting.promise);
    for (const id of [1, 2, 3, 4]) h.text({ type: 'subscribe', event_id: id, uid: id });
    await settle();
    expect(h.transport.of('error')).toEqual([expect.objectContaining({ code: 'bad_request', event_id: 4 })]);
    waiting.resolve({ result: 'allowed' });
    await settle();
    expect(h.session.subscriptionCount).toBe(3);
  });

  it('keeps a live subscription when re-validation cannot reach Directus, ends it when Directus refuses', async () => {
    const h = await authenticated({ revalidateIntervalMs: 1_000 });
    h.text({ type: 'subscribe', event_id: 7 });
    await settle();
    h.decide.mockResolvedValue({ result: 'unavailable', retryAfterMs: 1_000 });
    await vi.advanceTimersByTimeAsync(1_200);
    h.session.revalidateDue(Date.now());
    await settle();
    expect(h.decide).toHaveBeenLastCalledWith(expect.objectContaining({ eventId: 7, fresh: true }));
    expect(h.transport.of('unsubscribed')).toEqual([]);
    expect(h.transport.topics.has('event/7')).toBe(true);

    h.decide.mockResolvedValue({ result: 'forbidden' });
    await vi.advanceTimersByTimeAsync(1_200);
    h.session.revalidateDue(Date.now());
    await settle();
    expect(h.transport.of('unsubscribed')).toEqual([{ type: 'unsubscribed', event_id: 7, reason: 'forbidden' }]);
    expect(h.transport.topics.size).toBe(0);
  });

  it('answers a refused subscribe with the error of its reason and never an unavailable one as forbidden', async () => {
    const h = await authenticated();
    h.decide.mockResolvedValueOnce({ result: 'unavailable', retryAfterMs: 3_000 });
    h.decide.mockResolvedValueOnce({ result: 'forbidden' });
    h.decide.mockResolvedValueOnce({ result: 'not_found' });
    for (const id of [1, 2, 3]) h.text({ type: 'subscribe', event_id: id, uid: id });
    await settle();
    expect(h.transport.of('error')).toEqual([
      expect.objectContaining({ code: 'authorization_unavailable', event_id: 1, retry_after_ms: 3_000 }),
      expect.objectContaining({ code: 'forbidden', event_id: 2 }),
      expect.objectContaining({ code: 'not_found', event_id: 3 }),
    ]);
  });

  it('closes with 4401 when a refreshed token is of another user', async () => {
    const h = await authenticated();
    h.text({ type: 'auth', access_token: 'other-user' });
    await settle();
    expect(h.transport.ended).toEqual({ code: 4401, reason: 'user changed' });
  });
});

describe('client session: authorization from the token claim', () => {
  async function authenticatedWith(token: string, limits: Partial<SessionLimits> = {}): Promise<Harness> {
    const h = harness(limits);
    h.text({ type: 'auth', access_token: token });
    await settle();
    expect(h.transport.of('auth')).toHaveLength(1);
    return h;
  }

  it('subscribes to an event its token lists without asking Directus, and never re-validates it', async () => {
    const h = await authenticatedWith('claim:1,2', { revalidateIntervalMs: 1_000 });
    h.text({ type: 'subscribe', event_id: 1, uid: 's1' });
    await settle();
    expect(h.transport.of('subscribed')).toEqual([expect.objectContaining({ event_id: 1, uid: 's1' })]);
    expect(h.decide).not.toHaveBeenCalled();
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(1_500);
      h.session.revalidateDue(Date.now());
    }
    await settle();
    expect(h.decide).not.toHaveBeenCalled();
    expect(h.transport.topics.has('event/1')).toBe(true);
  });

  it('asks Directus about an event the claim does not list, and about every event of a partial claim', async () => {
    const h = await authenticatedWith('claim:1,2');
    h.text({ type: 'subscribe', event_id: 3 });
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(1);
    expect(h.decide).toHaveBeenLastCalledWith(expect.objectContaining({ eventId: 3, fresh: false, interest: h.session }));

    const partial = await authenticatedWith('claim:partial:1');
    partial.text({ type: 'subscribe', event_id: 1 });
    await settle();
    expect(partial.decide).toHaveBeenCalledTimes(1);

    const none = await authenticatedWith('no-claim');
    none.text({ type: 'subscribe', event_id: 1 });
    await settle();
    expect(none.decide).toHaveBeenCalledTimes(1);
  });

  it('re-checks at Directus, on a refresh, a subscription whose event left the claim; ends it when refused', async () => {
    const h = await authenticatedWith('claim:1,2', { revalidateIntervalMs: 1_000 });
    for (const id of [1, 2]) h.text({ type: 'subscribe', event_id: id });
    await settle();
    expect(h.transport.of('subscribed')).toHaveLength(2);
    expect(h.decide).not.toHaveBeenCalled();

    h.decide.mockResolvedValue({ result: 'forbidden' });
    h.text({ type: 'auth', access_token: 'claim:2' });
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(1);
    expect(h.decide).toHaveBeenLastCalledWith(expect.objectContaining({ eventId: 1, fresh: true }));
    expect(h.transport.of('unsubscribed')).toEqual([{ type: 'unsubscribed', event_id: 1, reason: 'forbidden' }]);
    expect(h.transport.topics.has('event/1')).toBe(false);
    // Event 2 is still listed: no call, still live, still never re-validated.
    await vi.advanceTimersByTimeAsync(1_500);
    h.session.revalidateDue(Date.now());
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(1);
    expect(h.transport.topics.has('event/2')).toBe(true);
  });

  it('keeps a subscription Directus still allows after it left the claim, re-validating it periodically from then on', async () => {
    const h = await authenticatedWith('claim:1', { revalidateIntervalMs: 1_000 });
    h.text({ type: 'subscribe', event_id: 1 });
    await settle();
    h.text({ type: 'auth', access_token: 'claim:partial:' });
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(1);
    expect(h.transport.of('unsubscribed')).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_500);
    h.session.revalidateDue(Date.now());
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(2);
    // Listed again by the next token: claim-authorized again at its next check, then left alone.
    h.text({ type: 'auth', access_token: 'claim:1' });
    await settle();
    await vi.advanceTimersByTimeAsync(1_500);
    h.session.revalidateDue(Date.now());
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1_500);
    h.session.revalidateDue(Date.now());
    await settle();
    expect(h.decide).toHaveBeenCalledTimes(2);
    expect(h.transport.topics.has('event/1')).toBe(true);
  });

  it('always gives a retry hint with authorization_unavailable, also when Directus gave none', async () => {
    const h = await authenticatedWith('no-claim');
    h.decide.mockResolvedValueOnce({ result: 'unavailable' });
    h.text({ type: 'subscribe', event_id: 4, uid: 'u' });
    await settle();
    const [error] = h.transport.of('error');
    expect(error).toMatchObject({ code: 'authorization_unavailable', event_id: 4, uid: 'u' });
    expect(error && 'retry_after_ms' in error ? error.retry_after_ms : undefined).toBeGreaterThan(0);
  });

  it('is no longer an interested party once its socket has closed', async () => {
    const h = await authenticatedWith('no-claim');
    expect(h.session.active).toBe(true);
    h.session.disconnect('protocol');
    expect(h.session.active).toBe(false);
  });
});
