import { Codec, isImei, type Position } from '@pitwall/contract';
import { InvalidPositionError } from './invalid-position-error.js';

/** One row of `positions`, validated and converted; `attributes` is already JSON text. */
export interface PositionRow {
  deviceId: string;
  recordedAtMs: number;
  /** Null when the producer did not stamp it. */
  receivedAtMs: number | null;
  lat: number;
  lon: number;
  altitudeM: number;
  speedKmh: number;
  headingDeg: number;
  satellites: number;
  attributes: string;
}

/** Positions before this are a device without a clock fix (Teltonika sends 1970 or GPS epoch dates). */
export const MIN_TIMESTAMP_MS = Date.UTC(2000, 0, 1);
/** How far a device clock may run ahead of the time the packet was received. */
export const MAX_CLOCK_AHEAD_MS = 24 * 3_600_000;
const SMALLINT_MAX = 32_767;

function timestampMs(value: bigint, what: string, notAfterMs: number): number {
  if (value < BigInt(MIN_TIMESTAMP_MS) || value > BigInt(notAfterMs)) {
    throw new InvalidPositionError('invalid_timestamp', `${what} ${value} ms is outside [${MIN_TIMESTAMP_MS}, ${notAfterMs}]`);
  }
  return Number(value);
}

/** An IO value as JSON: a number when exact, a decimal string beyond 2^53. */
function ioValue(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}

/**
 * The `attributes` document: IO elements by id (fixed-size ones under `io`, variable-length ones
 * as hex under `io_nx`), the event IO id, the priority, the codec and the Codec 16 generation type.
 */
export function positionAttributes(position: Position): string {
  const io: Record<string, number | string> = {};
  let ioNx: Record<string, string> | undefined;
  for (const element of position.io) {
    if (element.width === 0) {
      ioNx ??= {};
      ioNx[element.id] = Buffer.from(element.raw.buffer, element.raw.byteOffset, element.raw.byteLength).toString('hex');
    } else {
      io[element.id] = ioValue(element.value);
    }
  }
  const attributes: Record<string, unknown> = {
    priority: position.priority,
    event_io_id: position.eventIoId,
    codec: Codec[position.codec] ?? position.codec,
    io,
  };
  if (ioNx) attributes.io_nx = ioNx;
  if (position.generationType !== undefined) attributes.generation_type = position.generationType;
  return JSON.stringify(attributes);
}

/**
 * Validates a decoded Position and converts it to a row. Throws InvalidPositionError (with the
 * dead-letter reason) for values PostgreSQL would reject or that cannot be a real position.
 * `nowMs` bounds timestamps of positions the producer did not stamp.
 */
export function toPositionRow(position: Position, nowMs: number): PositionRow {
  if (!isImei(position.deviceId)) {
    throw new InvalidPositionError('invalid_device_id', `device id ${JSON.stringify(position.deviceId.slice(0, 40))} is not an IMEI`);
  }
  const receivedAtMs = position.receivedAtMs === 0n ? null : timestampMs(position.receivedAtMs, 'received_at', nowMs + MAX_CLOCK_AHEAD_MS);
  const recordedAtMs = timestampMs(position.recordedAtMs, 'recorded_at', (receivedAtMs ?? nowMs) + MAX_CLOCK_AHEAD_MS);
  if (position.latE7 < -900_000_000 || position.latE7 > 900_000_000 || position.lonE7 < -1_800_000_000 || position.lonE7 > 1_800_000_000) {
    throw new InvalidPositionError('invalid_coordinates', `lat ${position.latE7 / 1e7}, lon ${position.lonE7 / 1e7} is not on Earth`);
  }
  if (position.headingDeg > 360) throw new InvalidPositionError('invalid_value', `heading ${position.headingDeg} is above 360 degrees`);
  if (position.satellites > SMALLINT_MAX)
    throw new InvalidPositionError('invalid_value', `satellites ${position.satellites} is out of range`);
  return {
    deviceId: position.deviceId,
    recordedAtMs,
    receivedAtMs,
    lat: position.latE7 / 1e7,
    lon: position.lonE7 / 1e7,
    altitudeM: position.altitudeM,
    speedKmh: position.speedKmh,
    headingDeg: position.headingDeg,
    satellites: position.satellites,
    attributes: positionAttributes(position),
  };
}
