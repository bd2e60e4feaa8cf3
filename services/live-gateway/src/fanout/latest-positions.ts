import type { LivePosition } from '../protocol/position-json.js';

/** What the cache made of a position: kept (newer than the last one of its device), or why not. */
export type UpdateResult = 'kept' | 'stale' | 'future';

export interface LatestPositionsOptions {
  /**
   * A position whose device time is more than this ahead of the clock is neither kept nor forwarded
   * (GATEWAY_MAX_FUTURE_MS): one from a device with a wrong clock would otherwise pin its device, every
   * genuine position after it being older.
   */
  maxFutureMs?: number;
  now?: () => number;
}

/**
 * The newest position of each device (by device time): the snapshot a subscriber gets first, and the
 * monotonic filter of the fan-out: a position is forwarded only when it is kept here, that is newer
 * than the last one forwarded for its device. Resends of the durable stream after an outage (already
 * seen on the live-only stream), entries read twice and late retries are never shown twice nor move a
 * car back. Bounded: when full, the device updated least recently goes (a Map keeps insertion order
 * and an update re-inserts); a device forgotten that way accepts its next position, whatever its time.
 */
export class LatestPositions {
  private readonly byDevice = new Map<string, LivePosition>();
  private readonly maxFutureMs: number;
  private readonly now: () => number;

  constructor(
    private readonly maxDevices: number,
    options: LatestPositionsOptions = {},
  ) {
    this.maxFutureMs = options.maxFutureMs ?? Number.POSITIVE_INFINITY;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.byDevice.size;
  }

  /** Keeps `position` if it is newer than what is known of its device and not too far ahead of the clock. */
  update(position: LivePosition): UpdateResult {
    if (position.ts > this.now() + this.maxFutureMs) return 'future';
    const known = this.byDevice.get(position.deviceId);
    if (known !== undefined) {
      if (known.ts >= position.ts) return 'stale';
      this.byDevice.delete(position.deviceId);
    } else if (this.byDevice.size >= this.maxDevices) {
      const oldest = this.byDevice.keys().next();
      if (oldest.done !== true) this.byDevice.delete(oldest.value);
    }
    this.byDevice.set(position.deviceId, position);
    return 'kept';
  }

  get(deviceId: string): LivePosition | undefined {
    return this.byDevice.get(deviceId);
  }
}
