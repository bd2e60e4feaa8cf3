import { CODEC_8_EXTENDED, type AvlRecord } from '@pitwall/teltonika';
import { trackStateAt, TRACK_LENGTH_M } from './track.js';

/** A compact growable list of numbers (acknowledged timestamps of one device). */
export class NumberList {
  private data = new Float64Array(64);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = value;
  }

  *values(): IterableIterator<number> {
    for (let i = 0; i < this.length; i++) yield this.data[i] ?? 0;
  }
}

/**
 * What a tracker keeps in memory: records it generated and the server has not acknowledged. It
 * deletes a record only on an acknowledgement; anything sent and not acknowledged is sent again.
 */
export class DeviceState {
  /** Unacknowledged records, oldest first; the first `inflight` of them are in the packet on the wire. */
  readonly pending: AvlRecord[] = [];
  inflight = 0;
  /** Records generated before and not acknowledged then: the next send of them is a resend. */
  unackedSent = 0;
  readonly acked = new NumberList();
  lastTimestampMs = 0;
  nextRecordAt: number;
  private distanceM: number;
  private lastMoveAt: number;
  private odometerM = 0;
  private readonly pace: number;
  private satellites: number;

  constructor(
    readonly index: number,
    readonly imei: string,
    devices: number,
    now: number,
    private readonly intervalMs: number,
  ) {
    // Spread over the lap like cars after a few laps, each with its own pace (92-100 % of the limit).
    this.distanceM = ((devices - index) / devices) * TRACK_LENGTH_M;
    this.pace = 0.92 + 0.08 * fraction(index * 7919);
    this.satellites = 9 + Math.floor(fraction(index * 104729) * 6);
    this.lastMoveAt = now;
    // Stagger the first records so thousands of devices do not all fire in the same millisecond.
    this.nextRecordAt = now + fraction(index * 15485863) * intervalMs;
  }

  /** Generates the record due at `now`: device time strictly increasing (ms), position from the track. */
  generate(now: number, maxPending: number): { dropped: boolean } {
    const dt = Math.max(0, (now - this.lastMoveAt) / 1000);
    this.lastMoveAt = now;
    const before = trackStateAt(this.distanceM);
    const step = (before.speedKmh / 3.6) * this.pace * dt;
    this.distanceM += step;
    this.odometerM += step;
    const state = trackStateAt(this.distanceM);
    const speedKmh = Math.round(state.speedKmh * this.pace);
    if (fraction(now + this.index) < 0.05)
      this.satellites = Math.min(16, Math.max(6, this.satellites + (fraction(now * 3 + this.index) < 0.5 ? -1 : 1)));
    const timestampMs = Math.max(Math.floor(now), this.lastTimestampMs + 1);
    this.lastTimestampMs = timestampMs;
    this.pending.push({
      timestampMs,
      priority: 0,
      latE7: Math.round(state.lat * 1e7),
      lonE7: Math.round(state.lon * 1e7),
      altitudeM: Math.round(410 + 12 * Math.sin((2 * Math.PI * this.distanceM) / TRACK_LENGTH_M)),
      headingDeg: Math.round(state.headingDeg) % 360,
      satellites: this.satellites,
      speedKmh,
      eventIoId: 0,
      generationType: undefined,
      io: [
        { id: 239, width: 1, value: 1n, raw: undefined }, // ignition
        { id: 240, width: 1, value: speedKmh > 0 ? 1n : 0n, raw: undefined }, // movement
        { id: 21, width: 1, value: 4n, raw: undefined }, // GSM signal
        { id: 24, width: 2, value: BigInt(speedKmh), raw: undefined }, // speed
        { id: 66, width: 2, value: BigInt(13_600 + (this.index % 400)), raw: undefined }, // external voltage, mV
        { id: 16, width: 4, value: BigInt(Math.round(this.odometerM)), raw: undefined }, // total odometer, m
      ],
    });
    this.nextRecordAt += this.intervalMs;
    if (this.nextRecordAt < now) this.nextRecordAt = now + this.intervalMs; // fell behind (paused process): skip, do not burst
    // Device memory is finite: beyond it the oldest unsent record is lost, as on a real tracker.
    if (this.pending.length > maxPending && this.pending.length > this.inflight) {
      this.pending.splice(this.inflight, 1);
      if (this.unackedSent > this.inflight) this.unackedSent--;
      return { dropped: true };
    }
    return { dropped: false };
  }

  /** Takes the next packet's records (the oldest pending ones); `resent` of them were sent before. */
  takePacket(maxRecords: number): { records: AvlRecord[]; resent: number } {
    const count = Math.min(maxRecords, this.pending.length);
    this.inflight = count;
    const resent = Math.min(count, this.unackedSent);
    this.unackedSent = Math.max(this.unackedSent, count);
    return { records: this.pending.slice(0, count), resent };
  }

  /** The server acknowledged the packet in flight. */
  acknowledge(track: boolean): number {
    const count = this.inflight;
    const done = this.pending.splice(0, count);
    if (track) for (const record of done) this.acked.push(record.timestampMs);
    this.unackedSent = Math.max(0, this.unackedSent - count);
    this.inflight = 0;
    return count;
  }

  /** The packet in flight is lost (disconnect, timeout, refused count): its records stay pending. */
  abandonInflight(): void {
    this.inflight = 0;
  }
}

/** A deterministic pseudo-random fraction in [0, 1) from an integer. */
function fraction(seed: number): number {
  const x = Math.sin(seed * 12.9898 + 78.233) * 43758.5453;
  return x - Math.floor(x);
}

export const SIMULATOR_CODEC = CODEC_8_EXTENDED;
