import { describe, expect, it } from 'vitest';
import { intervalStart, nextIntervalStart, overlaps, parsePartitionBound, partitionName } from '@pitwall/writer';

const at = (iso: string) => Date.parse(iso);

describe('partition ranges', () => {
  it('finds the interval of an instant in UTC', () => {
    expect(intervalStart('day', at('2026-11-27T23:59:59.999Z'))).toBe(at('2026-11-27T00:00:00Z'));
    // 2026-11-29 is a Sunday: its week began on Monday 23rd
    expect(intervalStart('week', at('2026-11-29T12:00:00Z'))).toBe(at('2026-11-23T00:00:00Z'));
    expect(intervalStart('week', at('2026-11-23T00:00:00Z'))).toBe(at('2026-11-23T00:00:00Z'));
    expect(intervalStart('month', at('2026-12-31T23:00:00Z'))).toBe(at('2026-12-01T00:00:00Z'));
  });

  it('steps to the next interval, across month and year ends', () => {
    expect(nextIntervalStart('day', at('2026-12-31T00:00:00Z'))).toBe(at('2027-01-01T00:00:00Z'));
    expect(nextIntervalStart('week', at('2026-12-28T00:00:00Z'))).toBe(at('2027-01-04T00:00:00Z'));
    expect(nextIntervalStart('month', at('2026-12-01T00:00:00Z'))).toBe(at('2027-01-01T00:00:00Z'));
    expect(nextIntervalStart('month', at('2028-02-01T00:00:00Z'))).toBe(at('2028-03-01T00:00:00Z'));
  });

  it('names partitions by their first day', () => {
    expect(partitionName(at('2026-11-27T00:00:00Z'))).toBe('positions_p20261127');
  });

  it('parses the bounds PostgreSQL prints', () => {
    expect(parsePartitionBound('DEFAULT')).toBe('default');
    expect(parsePartitionBound("FOR VALUES FROM ('2026-11-27 00:00:00+00') TO ('2026-11-28 00:00:00+00')")).toEqual({
      from: at('2026-11-27T00:00:00Z'),
      to: at('2026-11-28T00:00:00Z'),
    });
    expect(parsePartitionBound("FOR VALUES FROM (MINVALUE) TO ('2026-01-01 00:00:00.5+00')")).toEqual({
      from: -Infinity,
      to: at('2026-01-01T00:00:00.500Z'),
    });
    expect(parsePartitionBound("FOR VALUES FROM ('2026-11-27 00:00:00+01') TO ('2026-11-28 00:00:00+01')")).toBeUndefined();
    expect(parsePartitionBound("FOR VALUES IN ('a')")).toBeUndefined();
  });

  it('detects overlapping ranges (half-open)', () => {
    expect(overlaps({ from: 0, to: 10 }, { from: 10, to: 20 })).toBe(false);
    expect(overlaps({ from: 0, to: 10 }, { from: 9, to: 20 })).toBe(true);
    expect(overlaps({ from: -Infinity, to: 10 }, { from: 0, to: 1 })).toBe(true);
  });
});
