import { describe, expect, it } from 'vitest';
import {
  actionForCloseCode,
  CLOSE_CODES,
  DISCONNECTS,
  ERROR_CODES,
  ERRORS,
  parseClientMessage,
  parseServerMessage,
  PROTOCOL_LIMITS,
  RETRYABLE_ERROR_CODES,
  TOKEN_ERROR_CODES,
  UPGRADE_REFUSALS,
  type Disconnect,
} from '../src/index.js';

describe('client messages', () => {
  it('accepts the four contract messages and keeps the uid', () => {
    expect(parseClientMessage('{"type":"auth","access_token":"t","uid":"a"}')).toEqual({
      ok: true,
      message: { type: 'auth', access_token: 't', uid: 'a' },
    });
    expect(parseClientMessage('{"type":"subscribe","event_id":42,"uid":7}')).toEqual({
      ok: true,
      message: { type: 'subscribe', event_id: 42, uid: 7 },
    });
    expect(parseClientMessage('{"type":"unsubscribe","event_id":42}')).toEqual({
      ok: true,
      message: { type: 'unsubscribe', event_id: 42 },
    });
    expect(parseClientMessage('{"type":"ping"}')).toEqual({ ok: true, message: { type: 'ping' } });
  });

  it('accepts since and history_seconds on subscribe (resume and trails)', () => {
    expect(parseClientMessage('{"type":"subscribe","event_id":4,"since":"v1.abc","history_seconds":60}')).toEqual({
      ok: true,
      message: { type: 'subscribe', event_id: 4, since: 'v1.abc', history_seconds: 60 },
    });
    expect(parseClientMessage('{"type":"unsubscribe","event_id":4,"since":"x"}')).toEqual({
      ok: true,
      message: { type: 'unsubscribe', event_id: 4 },
    });
  });

  it.each([
    ['a numeric since', '{"type":"subscribe","event_id":4,"since":5}', /since/],
    ['an empty since', '{"type":"subscribe","event_id":4,"since":""}', /since/],
    ['a too long since', `{"type":"subscribe","event_id":4,"since":"${'a'.repeat(PROTOCOL_LIMITS.maxCursorLength + 1)}"}`, /since/],
    ['a negative history_seconds', '{"type":"subscribe","event_id":4,"history_seconds":-1}', /history_seconds/],
    ['a fractional history_seconds', '{"type":"subscribe","event_id":4,"history_seconds":1.5}', /history_seconds/],
    ['a string history_seconds', '{"type":"subscribe","event_id":4,"history_seconds":"60"}', /history_seconds/],
    [
      'a huge history_seconds',
      `{"type":"subscribe","event_id":4,"history_seconds":${PROTOCOL_LIMITS.maxHistorySeconds + 1}}`,
      /history_seconds/,
    ],
  ])('refuses %s on subscribe', (_what, text, reason) => {
    const result = parseClientMessage(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it('reads server frames a client branches on, and nothing malformed', () => {
    expect(parseServerMessage('{"type":"positions","event_id":1,"positions":[],"cursor":"c"}')).toEqual({
      type: 'positions',
      event_id: 1,
      positions: [],
      cursor: 'c',
    });
    expect(parseServerMessage('{"type":"subscribed","event_id":1,"snapshot":[],"recovered":true}')).toMatchObject({ recovered: true });
    for (const bad of [
      'x',
      '[]',
      '{"type":"nope"}',
      '{"type":"positions","event_id":1}',
      '{"type":"subscribed","snapshot":[]}',
      '{"type":"error"}',
    ]) {
      expect(parseServerMessage(bad), bad).toBeUndefined();
    }
  });

  it('accepts an event id given as a decimal string, as Directus may serialise ids', () => {
    expect(parseClientMessage('{"type":"subscribe","event_id":"42"}')).toEqual({ ok: true, message: { type: 'subscribe', event_id: 42 } });
  });

  it.each([
    ['not JSON', '{"type":', /not valid JSON/],
    ['an array', '[1,2]', /JSON object/],
    ['null', 'null', /JSON object/],
    ['no type', '{"event_id":1}', /no type/],
    ['an unknown type', '{"type":"shutdown"}', /unknown message type "shutdown"/],
    ['a non-numeric string event id', '{"type":"subscribe","event_id":"42x"}', /positive integer/],
    ['a zero string event id', '{"type":"subscribe","event_id":"0"}', /positive integer/],
    ['a negative event id', '{"type":"subscribe","event_id":-1}', /positive integer/],
    ['a fractional event id', '{"type":"subscribe","event_id":1.5}', /positive integer/],
    ['an empty token', '{"type":"auth","access_token":""}', /access_token/],
    ['an object uid', '{"type":"ping","uid":{}}', /uid/],
  ])('refuses %s with a reason', (_what, text, reason) => {
    const result = parseClientMessage(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it('echoes the uid of a refused message when it could read it', () => {
    expect(parseClientMessage('{"type":"nope","uid":"x1"}')).toMatchObject({ ok: false, uid: 'x1' });
  });
});

describe('protocol limits', () => {
  it('refuse a token longer than fits in a message', () => {
    const token = 'x'.repeat(PROTOCOL_LIMITS.maxTokenLength + 1);
    expect(parseClientMessage(JSON.stringify({ type: 'auth', access_token: token })).ok).toBe(false);
    expect(parseClientMessage(JSON.stringify({ type: 'auth', access_token: token.slice(1) })).ok).toBe(true);
    expect(PROTOCOL_LIMITS.maxTokenLength).toBeLessThan(PROTOCOL_LIMITS.maxMessageBytes);
  });

  it('refuse a uid longer than the limit', () => {
    expect(parseClientMessage(JSON.stringify({ type: 'ping', uid: 'u'.repeat(PROTOCOL_LIMITS.maxUidLength + 1) })).ok).toBe(false);
  });
});

describe('the disconnect table', () => {
  const all = Object.entries(DISCONNECTS) as [string, Disconnect][];

  it('gives every disconnect a distinct metric label and a close code of the protocol', () => {
    const labels = all.map(([, d]) => d.label);
    expect(new Set(labels).size).toBe(labels.length);
    const codes = new Set<number>(Object.values(CLOSE_CODES));
    for (const [name, d] of all) {
      expect(codes.has(d.code), name).toBe(true);
      // A dropped socket sends no close frame, so it has no reason text; a close frame has one.
      expect(d.forceful, name).toBe(d.code === CLOSE_CODES.abnormal);
      expect(d.reason === '', name).toBe(d.forceful);
      // A close frame's reason must fit in its 123 bytes.
      expect(d.reason.length, name).toBeLessThanOrEqual(123);
    }
  });

  it('tells a client what to do after each close code, the same for every disconnect that shares it', () => {
    for (const [name, d] of all) if (!d.forceful) expect(actionForCloseCode(d.code), name).toBe(d.action);
    expect(actionForCloseCode(CLOSE_CODES.goingAway)).toBe('reconnect_elsewhere');
    expect(actionForCloseCode(CLOSE_CODES.unauthenticated)).toBe('refresh_token');
    expect(actionForCloseCode(CLOSE_CODES.protocolViolation)).toBe('stop');
    expect(actionForCloseCode(CLOSE_CODES.authTimeout)).toBe('reconnect');
    expect(actionForCloseCode(CLOSE_CODES.abnormal)).toBe('reconnect');
    expect(actionForCloseCode(CLOSE_CODES.normal)).toBe('stop');
    expect(actionForCloseCode(1011)).toBe('reconnect');
  });

  it('labels upgrade refusals distinctly from each other', () => {
    const labels = Object.values(UPGRADE_REFUSALS).map((r) => r.label);
    expect(new Set(labels).size).toBe(labels.length);
  });
});

describe('error codes', () => {
  it('are the contract list', () => {
    expect([...ERROR_CODES].sort()).toEqual(
      [
        'authorization_unavailable',
        'bad_request',
        'forbidden',
        'going_away',
        'internal',
        'not_found',
        'rate_limited',
        'token_expired',
        'unauthenticated',
      ].sort(),
    );
  });

  it('sort into retryable ones and token ones, which close with 4401', () => {
    expect([...RETRYABLE_ERROR_CODES].sort()).toEqual(['authorization_unavailable', 'rate_limited']);
    expect([...TOKEN_ERROR_CODES].sort()).toEqual(['token_expired', 'unauthenticated']);
    for (const code of TOKEN_ERROR_CODES) expect(ERRORS[code].closes).toBe(CLOSE_CODES.unauthenticated);
  });
});
