import { describe, expect, it } from 'vitest';
import {
  createPosition,
  decodePosition,
  deviceIdField,
  encodePosition,
  encodePositions,
  MAX_POSITION_ENTRY_BYTES,
  MAX_STORED_IO_VALUE_BYTES,
  type DroppedIo,
  type PositionInit,
} from '@pitwall/contract';
import { CODEC_8_EXTENDED, type AvlCodecId, type AvlRecord } from '@pitwall/teltonika';
import { positionCodec } from '../src/encoding/position-codec.js';
import { AVL_CODECS, prng, randomRecord } from '../../teltonika/test/random.js';

function reference(imei: string, receivedAtMs: number, codec: AvlCodecId, record: AvlRecord): Uint8Array {
  const init: PositionInit = {
    deviceId: imei,
    recordedAtMs: BigInt(record.timestampMs),
    receivedAtMs: BigInt(receivedAtMs),
    latE7: record.latE7,
    lonE7: record.lonE7,
    altitudeM: record.altitudeM,
    speedKmh: record.speedKmh,
    headingDeg: record.headingDeg,
    satellites: record.satellites,
    priority: record.priority,
    eventIoId: record.eventIoId,
    io: record.io.map((e) => ({ id: e.id, width: e.width, value: e.value, raw: e.raw ?? new Uint8Array(0) })),
    codec: positionCodec(codec),
    generationType: record.generationType,
  };
  return encodePosition(createPosition(init));
}

// The contract's fast encoder fed Teltonika records (ingestion's hot path), held to the contract's reference encoder.
describe('encodePositions of AVL records', () => {
  it('produces exactly the bytes of the contract encoder', () => {
    for (const codec of AVL_CODECS) {
      const rand = prng(codec * 31);
      for (let n = 0; n < 300; n++) {
        const imei = String(356307040000000 + n);
        const records = Array.from({ length: 1 + (n % 5) }, () => randomRecord(rand, codec));
        // Zero values must be omitted like protobuf-es does.
        if (n % 10 === 0) Object.assign(records[0] as AvlRecord, { latE7: 0, lonE7: 0, speedKmh: 0, priority: 0, eventIoId: 0 });
        const receivedAtMs = n % 7 === 0 ? 0 : 1_700_000_000_000 + n;
        const encoded = encodePositions(deviceIdField(imei), receivedAtMs, positionCodec(codec), records);
        expect(encoded).toHaveLength(records.length);
        encoded.forEach((bytes, i) => {
          expect(Buffer.from(bytes).toString('hex')).toBe(
            Buffer.from(reference(imei, receivedAtMs, codec, records[i] as AvlRecord)).toString('hex'),
          );
        });
      }
    }
  });

  it('round-trips through the contract decoder, including large uint64 values and NX bytes', () => {
    const record: AvlRecord = {
      timestampMs: 1_610_993_239_000,
      priority: 2,
      latE7: -546_844_316,
      lonE7: 252_650_199,
      altitudeM: -12,
      headingDeg: 359,
      satellites: 10,
      speedKmh: 312,
      eventIoId: 65535,
      generationType: undefined,
      io: [
        { id: 0, width: 1, value: 0n, raw: undefined },
        { id: 78, width: 8, value: 0xffff_ffff_ffff_ffffn, raw: undefined },
        { id: 16, width: 8, value: 0x8000_0000_0000_0000n, raw: undefined },
        { id: 17, width: 8, value: 0x0020_0000_0000_0000n, raw: undefined },
        { id: 300, width: 0, value: 0n, raw: new Uint8Array([1, 2, 3]) },
      ],
    };
    const [bytes] = encodePositions(deviceIdField('356307042441013'), 1_700_000_000_123, positionCodec(CODEC_8_EXTENDED), [record]);
    const position = decodePosition(new Uint8Array(bytes ?? []));
    expect(position.deviceId).toBe('356307042441013');
    expect(position.recordedAtMs).toBe(1_610_993_239_000n);
    expect(position.receivedAtMs).toBe(1_700_000_000_123n);
    expect(position.latE7).toBe(-546_844_316);
    expect(position.altitudeM).toBe(-12);
    expect(position.io.map((e) => e.value)).toEqual([0n, 0xffff_ffff_ffff_ffffn, 0x8000_0000_0000_0000n, 0x0020_0000_0000_0000n, 0n]);
    expect(Array.from(position.io[4]?.raw ?? [])).toEqual([1, 2, 3]);
    expect(Buffer.from(bytes ?? []).toString('hex')).toBe(
      Buffer.from(reference('356307042441013', 1_700_000_000_123, CODEC_8_EXTENDED, record)).toString('hex'),
    );
  });

  it('leaves out NX values over MAX_STORED_IO_VALUE_BYTES and elements past MAX_POSITION_ENTRY_BYTES, keeping the position', () => {
    const rand = prng(7);
    const nx = (id: number, bytes: number) => ({ id, width: 0 as const, value: 0n, raw: new Uint8Array(bytes).fill(id) });
    const base = randomRecord(rand, CODEC_8_EXTENDED);
    const records: AvlRecord[] = [
      { ...base, io: [nx(1, MAX_STORED_IO_VALUE_BYTES + 1), nx(2, MAX_STORED_IO_VALUE_BYTES), nx(3, 65_000)] },
      { ...base, io: Array.from({ length: 40 }, (_, i) => nx(10 + i, MAX_STORED_IO_VALUE_BYTES)) },
      { ...base, io: [] },
    ];
    const dropped: DroppedIo = { valueTooLarge: 0, entryFull: 0 };
    const encoded = encodePositions(deviceIdField('356307042441013'), 1_700_000_000_000, positionCodec(CODEC_8_EXTENDED), records, dropped);
    const positions = encoded.map((bytes) => decodePosition(new Uint8Array(bytes)));
    expect(positions.map((p) => p.recordedAtMs)).toEqual(records.map((r) => BigInt(r.timestampMs)));
    expect(positions[0]?.io.map((e) => e.id)).toEqual([2]);
    const kept = positions[1]?.io.length ?? 0;
    expect(kept).toBeGreaterThan(10);
    expect(kept).toBeLessThan(40);
    for (const bytes of encoded) expect(bytes.length).toBeLessThanOrEqual(MAX_POSITION_ENTRY_BYTES);
    expect(encoded[1]?.length).toBeGreaterThan(MAX_POSITION_ENTRY_BYTES - 300);
    expect(dropped).toEqual({ valueTooLarge: 2, entryFull: 40 - kept });
    // The entries at the cap are what the contract encoder makes of the records without the left-out elements.
    const trimmed = { ...records[1], io: records[1]?.io.slice(0, kept) ?? [] } as AvlRecord;
    expect(
      Buffer.from(encoded[1] ?? []).equals(Buffer.from(reference('356307042441013', 1_700_000_000_000, CODEC_8_EXTENDED, trimmed))),
    ).toBe(true);
  });
});
