import { describe, expect, it } from 'vitest';
import {
  Codec,
  createPosition,
  decodeEntryFields,
  decodePosition,
  encodePosition,
  entryTraceparent,
  isImei,
  StreamEntryError,
} from '@pitwall/contract';

const position = createPosition({
  deviceId: '356307042441013',
  recordedAtMs: 1_610_993_239_000n,
  receivedAtMs: 1_610_993_240_123n,
  latE7: 546_844_316,
  lonE7: -252_650_199,
  altitudeM: -12,
  speedKmh: 47,
  headingDeg: 359,
  satellites: 10,
  priority: 2,
  eventIoId: 253,
  codec: Codec.CODEC_8_EXTENDED,
  generationType: 5,
  io: [
    { id: 16, width: 4, value: 50_751_490n },
    { id: 78, width: 8, value: 0xffff_ffff_ffff_fffen },
    { id: 385, width: 0, raw: Uint8Array.from([1, 2, 3]) },
  ],
});

describe('stream entry codec', () => {
  it('round-trips every field, including 64-bit and variable-length IO values', () => {
    const decoded = decodePosition(encodePosition(position));
    expect(decoded).toEqual(position);
    expect(decoded.io[1]?.value).toBe(0xffff_ffff_ffff_fffen);
    expect(decoded.generationType).toBe(5);
  });

  it('keeps generation type absent when the codec has none', () => {
    const plain = createPosition({ deviceId: '1', recordedAtMs: 1n });
    expect(decodePosition(encodePosition(plain)).generationType).toBeUndefined();
  });

  it('finds field p in a Redis field list given as Buffers or strings', () => {
    const bytes = Buffer.from(encodePosition(position));
    expect(decodeEntryFields([Buffer.from('x'), Buffer.from('y'), Buffer.from('p'), bytes])).toEqual(position);
    expect(decodeEntryFields(['p', bytes])).toEqual(position);
  });

  it('throws StreamEntryError for a missing field or bytes that are not a Position', () => {
    expect(() => decodeEntryFields([Buffer.from('q'), Buffer.from('1')])).toThrow(StreamEntryError);
    const err = (() => {
      try {
        decodePosition(Uint8Array.from([0xff, 0xff, 0xff]));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(StreamEntryError);
    expect((err as StreamEntryError).code).toBe('STREAM_ENTRY_INVALID');
  });

  it('recognises IMEIs', () => {
    expect(isImei('356307042441013')).toBe(true);
    expect(isImei('35630704244101')).toBe(false);
    expect(isImei('35630704244101x')).toBe(false);
  });
});

describe('entryTraceparent', () => {
  it('returns the value of field tp, and undefined when an entry carries none', () => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    expect(entryTraceparent([Buffer.from('p'), Buffer.from([1, 2]), Buffer.from('tp'), Buffer.from(tp)])).toBe(tp);
    expect(entryTraceparent(['p', 'x', 'tp', tp])).toBe(tp);
    expect(entryTraceparent([Buffer.from('p'), Buffer.from([1, 2])])).toBeUndefined();
    expect(entryTraceparent([Buffer.from('p'), Buffer.from('tp')])).toBeUndefined();
  });
});
