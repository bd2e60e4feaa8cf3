import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { PositionSchema, type Position } from './gen/pitwall/telemetry/v1/position_pb.js';
import { StreamEntryError } from './stream-entry-error.js';

/** Field of a stream entry that holds the protobuf-encoded Position. */
export const POSITION_FIELD = 'p';
const POSITION_FIELD_BYTE = POSITION_FIELD.charCodeAt(0);

/** Whether a field name of a stream entry (a Buffer when read with Buffer replies) is POSITION_FIELD. */
export function isPositionField(name: Buffer | string | undefined): boolean {
  return typeof name === 'string' ? name === POSITION_FIELD : name !== undefined && name.length === 1 && name[0] === POSITION_FIELD_BYTE;
}

/**
 * Optional field of a stream entry beside `p`: the W3C traceparent of the packet a sampled position
 * came in, so the writer and the gateway continue its trace. Readers that do not know it ignore it.
 */
export const TRACE_FIELD = 'tp';

/** The traceparent of an entry's flat field/value list, or undefined when it carries none. */
export function entryTraceparent(fields: readonly (Buffer | string)[]): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    if (name !== undefined && name.length === 2 && name.toString() === TRACE_FIELD) return fields[i + 1]?.toString('latin1');
  }
  return undefined;
}

export type PositionInit = Parameters<typeof create<typeof PositionSchema>>[1];

export function createPosition(init: PositionInit): Position {
  return create(PositionSchema, init);
}

/** Serialises a Position for XADD (field `p`). */
export function encodePosition(position: Position): Uint8Array {
  return toBinary(PositionSchema, position);
}

/** Decodes a Position; throws StreamEntryError when the bytes are not one. */
export function decodePosition(bytes: Uint8Array): Position {
  try {
    return fromBinary(PositionSchema, bytes);
  } catch (err) {
    throw new StreamEntryError(`undecodable Position: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Decodes the Position of one stream entry given its flat field/value list as Redis returns it
 * ([field, value, field, value, ...]). Throws StreamEntryError when field `p` is missing or invalid.
 */
export function decodeEntryFields(fields: readonly (Buffer | string)[]): Position {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (!isPositionField(fields[i])) continue;
    const value = fields[i + 1];
    if (typeof value === 'string') throw new StreamEntryError('field p was read as a string; read the stream with Buffer replies');
    if (value === undefined) break;
    // A plain view, not a Buffer: decoded bytes fields then compare and serialise as Uint8Array.
    return decodePosition(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  throw new StreamEntryError(`stream entry has no field "${POSITION_FIELD}"`);
}

/**
 * Largest encoded Position (field `p`) ingestion stores in a shard or live-only stream. Readers
 * (writer batches, gateway warm-up) size their memory bounds from it; ingestion drops IO elements
 * that would make an entry larger (counted), never the position itself.
 */
export const MAX_POSITION_ENTRY_BYTES = 4096;

/** Largest variable-length (NX, Codec 8 Extended) IO value ingestion stores; longer ones are dropped and counted. */
export const MAX_STORED_IO_VALUE_BYTES = 256;
