import { createPosition, decodePosition, encodePosition, PositionReader, type PositionInit } from '@pitwall/contract';
import { describe, expect, it } from 'vitest';
import { positionPrefix, readLivePosition, toLivePosition } from '../src/protocol/position-json.js';
import { errorMessage, positionsMessage, subscribedMessage, unsubscribedMessage } from '../src/protocol/server-message.js';

describe('position JSON', () => {
  it('has exactly the contract fields, in degrees and milliseconds', () => {
    const live = toLivePosition(
      createPosition({
        deviceId: '352093086403655',
        recordedAtMs: 1_700_000_000_123n,
        receivedAtMs: 1_700_000_000_456n,
        latE7: 546_872_000,
        lonE7: -252_796_000,
        altitudeM: 112,
        speedKmh: 87,
        headingDeg: 270,
        satellites: 11,
      }),
    );
    const json: unknown = JSON.parse(positionPrefix(live.deviceId, 'No. 7 "Fast"') + live.body);
    expect(json).toEqual({
      device_id: '352093086403655',
      label: 'No. 7 "Fast"',
      ts: 1_700_000_000_123,
      lat: 54.6872,
      lon: -25.2796,
      alt: 112,
      speed: 87,
      heading: 270,
      sats: 11,
      rx: 1_700_000_000_456,
    });
    expect(Object.keys(json as object)).toEqual(['device_id', 'label', 'ts', 'lat', 'lon', 'alt', 'speed', 'heading', 'sats', 'rx']);
    expect(live).toMatchObject({ deviceId: '352093086403655', ts: 1_700_000_000_123, rx: 1_700_000_000_456 });
  });

  it('is the same read in place as decoded by protobuf-es, its body made on first use', () => {
    const reader = new PositionReader();
    const inits: PositionInit[] = [
      {
        deviceId: '352093086403655',
        recordedAtMs: 1_700_000_000_123n,
        receivedAtMs: 1_700_000_000_456n,
        latE7: -546_872_123,
        lonE7: 1_799_999_999,
        altitudeM: -12,
        speedKmh: 301,
        headingDeg: 359,
        satellites: 24,
        io: [{ id: 21, width: 1, value: 4n }],
      },
      { deviceId: 'ünïcode-😀' },
      {},
    ];
    for (const init of inits) {
      const bytes = Buffer.from(encodePosition(createPosition(init)));
      // Inside a larger buffer, as in a stream reply.
      const reply = Buffer.concat([Buffer.from('$3\r\nabc\r\n'), bytes, Buffer.from('\r\n')]);
      const read = readLivePosition(reader, reply, 9, 9 + bytes.length);
      const decoded = toLivePosition(decodePosition(bytes));
      expect(read).toBeDefined();
      expect({ deviceId: read?.deviceId, ts: read?.ts, rx: read?.rx, body: read?.body }).toEqual({
        deviceId: decoded.deviceId,
        ts: decoded.ts,
        rx: decoded.rx,
        body: decoded.body,
      });
    }
  });

  it('leaves what the in-place reader does not take to the full decoder', () => {
    // Field 2 (recorded_at_ms) with the wrong wire type: protobuf-es decides what it is.
    expect(readLivePosition(new PositionReader(), Buffer.from([0x15, 1, 2, 3, 4]), 0, 5)).toBeUndefined();
  });
});

describe('server messages', () => {
  const position = '{"device_id":"1","label":"a","ts":1,"lat":0,"lon":0,"alt":0,"speed":0,"heading":0,"sats":0,"rx":2}';

  it('are valid JSON with the contract shapes', () => {
    expect(JSON.parse(subscribedMessage(42, [position, position], 'u'))).toEqual({
      type: 'subscribed',
      event_id: 42,
      uid: 'u',
      snapshot: [JSON.parse(position), JSON.parse(position)],
    });
    expect(JSON.parse(subscribedMessage(1, []))).toEqual({ type: 'subscribed', event_id: 1, snapshot: [] });
    expect(JSON.parse(positionsMessage(3, [position], '1.1.5-0'))).toEqual({
      type: 'positions',
      event_id: 3,
      cursor: '1.1.5-0',
      positions: [JSON.parse(position)],
    });
    expect(JSON.parse(subscribedMessage(2, [], 'u', { recovered: false, cursor: '1.1._', history: [position] }))).toEqual({
      type: 'subscribed',
      event_id: 2,
      uid: 'u',
      recovered: false,
      cursor: '1.1._',
      snapshot: [],
      history: [JSON.parse(position)],
    });
    expect(JSON.parse(unsubscribedMessage(3, 'forbidden'))).toEqual({ type: 'unsubscribed', event_id: 3, reason: 'forbidden' });
    expect(JSON.parse(errorMessage('rate_limited', 'slow down', { uid: 9, retryAfterMs: 199.2 }))).toEqual({
      type: 'error',
      code: 'rate_limited',
      message: 'slow down',
      retry_after_ms: 200,
      uid: 9,
    });
    expect(JSON.parse(errorMessage('forbidden', 'no', { eventId: 4 }))).toEqual({
      type: 'error',
      code: 'forbidden',
      message: 'no',
      event_id: 4,
    });
  });
});
