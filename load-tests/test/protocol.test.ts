import { describe, expect, it } from 'vitest';
import { authMessage, parseServerFrame, receivedAtOf, subscribeMessage } from '../src/protocol.js';

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
