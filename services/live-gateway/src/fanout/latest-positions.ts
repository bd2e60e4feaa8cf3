import type { LivePosition } from '../protocol/position-json.js';

/**
 * The newest position of each device (by device time), for the snapshot a subscriber gets first.
 * Bounded: when full, the device updated least recently goes (a Map keeps insertion order and an
 * update re-inserts).
 */
export class LatestPositions {
  private readonly byDevice = new Map<string, LivePosition>();

  constructor(private readonly maxDevices: number) {}

  get size(): number {
    return this.byDevice.size;
  }

  /** Keeps `position` if it is newer than what is known of its device. Returns whether it was. */
  update(position: LivePosition): boolean {
    const known = this.byDevice.get(position.deviceId);
    if (known !== undefined) {
      if (known.ts > position.ts) return false;
      this.byDevice.delete(position.deviceId);
    } else if (this.byDevice.size >= this.maxDevices) {
      const oldest = this.byDevice.keys().next();
      if (oldest.done !== true) this.byDevice.delete(oldest.value);
    }
    this.byDevice.set(position.deviceId, position);
    return true;
  }

  get(deviceId: string): LivePosition | undefined {
    return this.byDevice.get(deviceId);
  }
}
