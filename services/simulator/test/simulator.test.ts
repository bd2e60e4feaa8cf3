import { describe, expect, it } from 'vitest';
import { simulatorImei, TRACK, TRACK_LENGTH_M, trackStateAt } from '@pitwall/simulator';
import { DeviceState } from '../src/device.js';

function distanceM(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const dLat = (b.lat - a.lat) * 111_320;
  const dLon = (b.lon - a.lon) * 111_320 * Math.cos((a.lat * Math.PI) / 180);
  return Math.hypot(dLat, dLon);
}

describe('TRACK', () => {
  it('is a closed circuit of a few kilometres with evenly spaced points', () => {
    expect(TRACK.length).toBeGreaterThan(100);
    expect(TRACK_LENGTH_M).toBeGreaterThan(3_000);
    expect(TRACK_LENGTH_M).toBeLessThan(8_000);
    for (let i = 0; i < TRACK.length; i++) {
      const gap = distanceM(TRACK[i] ?? { lat: 0, lon: 0 }, TRACK[(i + 1) % TRACK.length] ?? { lat: 0, lon: 0 });
      expect(gap).toBeGreaterThan(2);
      expect(gap).toBeLessThan(20);
    }
  });

  it('gives racing speeds (slow corners, fast straights) and headings in [0, 360)', () => {
    const speeds: number[] = [];
    for (let s = 0; s < TRACK_LENGTH_M; s += 5) {
      const state = trackStateAt(s);
      speeds.push(state.speedKmh);
      expect(state.headingDeg).toBeGreaterThanOrEqual(0);
      expect(state.headingDeg).toBeLessThan(360);
    }
    expect(Math.min(...speeds)).toBeGreaterThan(40);
    expect(Math.min(...speeds)).toBeLessThan(140);
    expect(Math.max(...speeds)).toBeGreaterThan(250);
    expect(Math.max(...speeds)).toBeLessThan(330);
    expect(trackStateAt(TRACK_LENGTH_M + 10)).toEqual(trackStateAt(10));
  });
});

describe('simulatorImei', () => {
  it('is 356307040000000 + index, as 15 digits', () => {
    expect(simulatorImei(0)).toBe('356307040000000');
    expect(simulatorImei(42)).toBe('356307040000042');
    expect(() => simulatorImei(-1)).toThrow(RangeError);
  });
});

describe('DeviceState', () => {
  it('keeps device timestamps unique and strictly increasing, even within one millisecond', () => {
    const device = new DeviceState(0, simulatorImei(0), 1, 1_000_000, 1);
    for (let i = 0; i < 50; i++) device.generate(1_000_000, 1_000);
    const stamps = device.pending.map((r) => r.timestampMs);
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]).toBeGreaterThan(stamps[i - 1] ?? Infinity);
  });

  it('forgets records only on acknowledgement and counts resends', () => {
    const device = new DeviceState(3, simulatorImei(3), 10, 0, 100);
    for (let t = 0; t < 5; t++) device.generate(t * 100, 1_000);
    expect(device.takePacket(3)).toMatchObject({ resent: 0 });
    device.abandonInflight(); // connection lost
    const again = device.takePacket(4);
    expect(again.records).toHaveLength(4);
    expect(again.resent).toBe(3);
    expect(device.acknowledge(true)).toBe(4);
    expect(device.pending).toHaveLength(1);
    expect([...device.acked.values()]).toEqual(again.records.map((r) => r.timestampMs));
    expect(device.takePacket(25)).toMatchObject({ resent: 0 });
  });

  it('moves along the track at the track speed', () => {
    const device = new DeviceState(0, simulatorImei(0), 1, 0, 1000);
    for (let t = 0; t <= 10; t++) device.generate(t * 1000, 1_000);
    const records = device.pending;
    for (let i = 1; i < records.length; i++) {
      const a = records[i - 1];
      const b = records[i];
      if (!a || !b) continue;
      const metres = distanceM({ lat: a.latE7 / 1e7, lon: a.lonE7 / 1e7 }, { lat: b.latE7 / 1e7, lon: b.lonE7 / 1e7 });
      expect(metres).toBeGreaterThan(5);
      expect(metres).toBeLessThan(95); // < 340 km/h over one second
      expect(b.speedKmh).toBeGreaterThan(30);
    }
  });
});
