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

/** What is wrong with a device id, or undefined when it is an IMEI (the fast decoder checks its bytes instead). */
function deviceIdProblem(deviceId: string): InvalidPositionError | undefined {
  if (isImei(deviceId)) return undefined;
  return new InvalidPositionError('invalid_device_id', `device id ${JSON.stringify(deviceId.slice(0, 40))} is not an IMEI`);
}

/**
 * What is wrong with a position's values, or undefined when it can be stored: values PostgreSQL
 * would reject or that cannot be a real position. `nowMs` bounds timestamps the producer did not
 * stamp. Shared by both decoders, so they accept exactly the same positions.
 */
export function valueProblem(
  recordedAtMs: number,
  receivedAtMs: number | null,
  lat: number,
  lon: number,
  headingDeg: number,
  satellites: number,
  nowMs: number,
): InvalidPositionError | undefined {
  const receivedLimit = nowMs + MAX_CLOCK_AHEAD_MS;
  if (receivedAtMs !== null && !(receivedAtMs >= MIN_TIMESTAMP_MS && receivedAtMs <= receivedLimit)) {
    return new InvalidPositionError(
      'invalid_timestamp',
      `received_at ${receivedAtMs} ms is outside [${MIN_TIMESTAMP_MS}, ${receivedLimit}]`,
    );
  }
  const recordedLimit = (receivedAtMs ?? nowMs) + MAX_CLOCK_AHEAD_MS;
  if (!(recordedAtMs >= MIN_TIMESTAMP_MS && recordedAtMs <= recordedLimit)) {
    return new InvalidPositionError(
      'invalid_timestamp',
      `recorded_at ${recordedAtMs} ms is outside [${MIN_TIMESTAMP_MS}, ${recordedLimit}]`,
    );
  }
  if (!(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180)) {
    return new InvalidPositionError('invalid_coordinates', `lat ${lat}, lon ${lon} is not on Earth`);
  }
  if (!(headingDeg >= 0 && headingDeg <= 360))
    return new InvalidPositionError('invalid_value', `heading ${headingDeg} is not within 0-360 degrees`);
  if (!(satellites >= 0 && satellites <= SMALLINT_MAX))
    return new InvalidPositionError('invalid_value', `satellites ${satellites} is out of range`);
  return undefined;
}

/** Throws InvalidPositionError (with the dead-letter reason) when a row cannot be stored (see valueProblem). */
export function checkPositionRow(row: PositionRow, nowMs: number): void {
  const problem =
    deviceIdProblem(row.deviceId) ??
    valueProblem(row.recordedAtMs, row.receivedAtMs, row.lat, row.lon, row.headingDeg, row.satellites, nowMs);
  if (problem) throw problem;
}

const BIG_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A 64-bit timestamp as a number; beyond the safe range it is invalid anyway (infinities fail the checks). */
function timestampNumber(value: bigint): number {
  if (value > BIG_SAFE) return Infinity;
  return value < -BIG_SAFE ? -Infinity : Number(value);
}

/**
 * Validates a decoded Position and converts it to a row. Throws InvalidPositionError (with the
 * dead-letter reason) for values PostgreSQL would reject or that cannot be a real position.
 * `nowMs` bounds timestamps of positions the producer did not stamp.
 */
export function toPositionRow(position: Position, nowMs: number): PositionRow {
  const row: PositionRow = {
    deviceId: position.deviceId,
    recordedAtMs: timestampNumber(position.recordedAtMs),
    receivedAtMs: position.receivedAtMs === 0n ? null : timestampNumber(position.receivedAtMs),
    lat: position.latE7 / 1e7,
    lon: position.lonE7 / 1e7,
    altitudeM: position.altitudeM,
    speedKmh: position.speedKmh,
    headingDeg: position.headingDeg,
    satellites: position.satellites,
    attributes: '',
  };
  checkPositionRow(row, nowMs);
  row.attributes = positionAttributes(position);
  return row;
}
