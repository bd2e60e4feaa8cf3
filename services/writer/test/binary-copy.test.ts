import { describe, expect, it } from 'vitest';
import { encodeBinaryCopy, POSITION_COLUMNS, type PositionRow } from '@pitwall/writer';

const row: PositionRow = {
  deviceId: '356307042441013',
  recordedAtMs: Date.UTC(2000, 0, 1, 0, 0, 1, 500),
  receivedAtMs: null,
  lat: 1.5,
  lon: -2.25,
  altitudeM: 3,
  speedKmh: 4,
  headingDeg: 5,
  satellites: 6,
  attributes: '{"é":1}',
};

/** Reads one tuple back: the field values as raw buffers (null for NULL). */
function tuples(buf: Buffer): (Buffer | null)[][] {
  expect(buf.subarray(0, 11).toString('latin1')).toBe('PGCOPY\n\xff\r\n\0');
  let o = 19;
  const out: (Buffer | null)[][] = [];
  for (;;) {
    const fields = buf.readInt16BE(o);
    o += 2;
    if (fields === -1) break;
    const values: (Buffer | null)[] = [];
    for (let i = 0; i < fields; i++) {
      const length = buf.readInt32BE(o);
      o += 4;
      if (length === -1) {
        values.push(null);
        continue;
      }
      values.push(buf.subarray(o, o + length));
      o += length;
    }
    out.push(values);
  }
  expect(o).toBe(buf.length);
  return out;
}

describe('encodeBinaryCopy', () => {
  it('writes header, one tuple per row with every column, NULLs, and the trailer, sized exactly', () => {
    const buf = encodeBinaryCopy([row, { ...row, receivedAtMs: row.recordedAtMs }]);
    const [first, second] = tuples(buf);
    expect(first).toHaveLength(POSITION_COLUMNS.length);
    expect(first![0]!.toString()).toBe('356307042441013');
    // microseconds since 2000-01-01
    expect(first![1]!.readBigInt64BE()).toBe(1_500_000n);
    expect(first![2]).toBeNull();
    expect(second![2]!.readBigInt64BE()).toBe(1_500_000n);
    expect(first![3]!.readDoubleBE()).toBe(1.5);
    expect(first![4]!.readDoubleBE()).toBe(-2.25);
    expect(first![5]!.readFloatBE()).toBe(3);
    expect(first![8]!.readInt16BE()).toBe(6);
    // jsonb: version byte 1, then UTF-8 text
    expect(first![9]![0]).toBe(1);
    expect(first![9]!.subarray(1).toString('utf8')).toBe('{"é":1}');
  });

  it('encodes timestamps before 2000 and far ahead', () => {
    const [[, before], [, after]] = tuples(
      encodeBinaryCopy([
        { ...row, recordedAtMs: Date.UTC(1999, 11, 31, 23, 59, 59) },
        { ...row, recordedAtMs: Date.UTC(2200, 0, 1) },
      ]),
    ) as [Buffer[], Buffer[]];
    expect(before!.readBigInt64BE()).toBe(-1_000_000n);
    expect(after!.readBigInt64BE()).toBe(BigInt(Date.UTC(2200, 0, 1) - Date.UTC(2000, 0, 1)) * 1000n);
  });

  it('encodes an empty batch', () => {
    expect(tuples(encodeBinaryCopy([]))).toEqual([]);
  });
});
