import { describe, expect, it } from 'vitest';
import { Codec, createPosition, type PositionInit } from '@pitwall/contract';
import { InvalidPositionError, MAX_CLOCK_AHEAD_MS, toPositionRow } from '@pitwall/writer';

const NOW = Date.UTC(2026, 10, 27, 12);

function position(overrides: PositionInit = {}) {
  return createPosition({
    deviceId: '356307042441013',
    recordedAtMs: BigInt(NOW - 5_000),
    receivedAtMs: BigInt(NOW - 1_000),
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
      { id: 385, width: 0, raw: Uint8Array.from([1, 2, 255]) },
    ],
    ...overrides,
  });
}

function reasonOf(init: PositionInit): string | undefined {
  try {
    toPositionRow(position(init), NOW);
    return undefined;
  } catch (err) {
    if (err instanceof InvalidPositionError) return err.reason;
    throw err;
  }
}

describe('toPositionRow', () => {
  it('converts a position to a row with degrees and the attributes document', () => {
    const row = toPositionRow(position(), NOW);
    expect(row).toMatchObject({
      deviceId: '356307042441013',
      recordedAtMs: NOW - 5_000,
      receivedAtMs: NOW - 1_000,
      lat: 54.6844316,
      lon: -25.2650199,
      altitudeM: -12,
      speedKmh: 47,
      headingDeg: 359,
      satellites: 10,
    });
    expect(JSON.parse(row.attributes)).toEqual({
      priority: 2,
      event_io_id: 253,
      codec: 'CODEC_8_EXTENDED',
      generation_type: 5,
      io: { '16': 50_751_490, '78': '18446744073709551614' },
      io_nx: { '385': '0102ff' },
    });
  });

  it('stores a missing ingestion time as null and bounds the device time by now instead', () => {
    const row = toPositionRow(position({ receivedAtMs: 0n }), NOW);
    expect(row.receivedAtMs).toBeNull();
    expect(reasonOf({ receivedAtMs: 0n, recordedAtMs: BigInt(NOW + MAX_CLOCK_AHEAD_MS + 1) })).toBe('invalid_timestamp');
  });

  it('names the reason of every value that cannot be a stored position', () => {
    expect(reasonOf({ deviceId: '' })).toBe('invalid_device_id');
    expect(reasonOf({ deviceId: '35630704244101x' })).toBe('invalid_device_id');
    expect(reasonOf({ latE7: 900_000_001 })).toBe('invalid_coordinates');
    expect(reasonOf({ lonE7: -1_800_000_001 })).toBe('invalid_coordinates');
    expect(reasonOf({ recordedAtMs: 0n })).toBe('invalid_timestamp');
    expect(reasonOf({ recordedAtMs: BigInt(Date.UTC(1999, 11, 31)) })).toBe('invalid_timestamp');
    expect(reasonOf({ recordedAtMs: BigInt(NOW - 1_000 + MAX_CLOCK_AHEAD_MS + 1) })).toBe('invalid_timestamp');
    expect(reasonOf({ recordedAtMs: 9_223_372_036_854_775_807n })).toBe('invalid_timestamp');
    expect(reasonOf({ receivedAtMs: BigInt(NOW + MAX_CLOCK_AHEAD_MS + 1) })).toBe('invalid_timestamp');
    expect(reasonOf({ headingDeg: 361 })).toBe('invalid_value');
    expect(reasonOf({ satellites: 40_000 })).toBe('invalid_value');
  });

  it('accepts the edges of the valid ranges', () => {
    expect(reasonOf({ latE7: -900_000_000, lonE7: 1_800_000_000, headingDeg: 360, satellites: 32_767 })).toBeUndefined();
    expect(reasonOf({ recordedAtMs: BigInt(Date.UTC(2000, 0, 1)) })).toBeUndefined();
  });
});
