// Field numbers and wire types of pitwall.telemetry.v1.Position and IoElement
// (proto/pitwall/telemetry/v1/position.proto): the one place the hand-written fast paths
// (position-encoder.ts, position-reader.ts) take them from. test/position-wire.test.ts pins them to the
// generated descriptor: a field added to or renumbered in the .proto fails it until the fast paths know.

/** Protobuf wire types used by Position. */
export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

/** Position field numbers. */
export const POSITION_DEVICE_ID = 1;
export const POSITION_RECORDED_AT_MS = 2;
export const POSITION_RECEIVED_AT_MS = 3;
export const POSITION_LAT_E7 = 4;
export const POSITION_LON_E7 = 5;
export const POSITION_ALTITUDE_M = 6;
export const POSITION_SPEED_KMH = 7;
export const POSITION_HEADING_DEG = 8;
export const POSITION_SATELLITES = 9;
export const POSITION_PRIORITY = 10;
export const POSITION_EVENT_IO_ID = 11;
export const POSITION_IO = 12;
export const POSITION_CODEC = 13;
export const POSITION_GENERATION_TYPE = 14;
/** Highest Position field number the fast paths know (a higher one is skipped when read). */
export const POSITION_LAST_FIELD = POSITION_GENERATION_TYPE;

/** IoElement field numbers. */
export const IO_ID = 1;
export const IO_WIDTH = 2;
export const IO_VALUE = 3;
export const IO_RAW = 4;

/** A field's tag (key) as written before its value: field number and wire type. */
export function fieldTag(field: number, wireType: number): number {
  return (field << 3) | wireType;
}

/** Every Position field the fast paths know, by its protobuf-es (camelCase) name, with its wire type. */
export const POSITION_FIELDS: Readonly<Record<string, readonly [number, number]>> = {
  deviceId: [POSITION_DEVICE_ID, WIRE_LEN],
  recordedAtMs: [POSITION_RECORDED_AT_MS, WIRE_VARINT],
  receivedAtMs: [POSITION_RECEIVED_AT_MS, WIRE_VARINT],
  latE7: [POSITION_LAT_E7, WIRE_VARINT],
  lonE7: [POSITION_LON_E7, WIRE_VARINT],
  altitudeM: [POSITION_ALTITUDE_M, WIRE_VARINT],
  speedKmh: [POSITION_SPEED_KMH, WIRE_VARINT],
  headingDeg: [POSITION_HEADING_DEG, WIRE_VARINT],
  satellites: [POSITION_SATELLITES, WIRE_VARINT],
  priority: [POSITION_PRIORITY, WIRE_VARINT],
  eventIoId: [POSITION_EVENT_IO_ID, WIRE_VARINT],
  io: [POSITION_IO, WIRE_LEN],
  codec: [POSITION_CODEC, WIRE_VARINT],
  generationType: [POSITION_GENERATION_TYPE, WIRE_VARINT],
};

/** Every IoElement field the fast paths know, by name, with its wire type. */
export const IO_ELEMENT_FIELDS: Readonly<Record<string, readonly [number, number]>> = {
  id: [IO_ID, WIRE_VARINT],
  width: [IO_WIDTH, WIRE_VARINT],
  value: [IO_VALUE, WIRE_VARINT],
  raw: [IO_RAW, WIRE_LEN],
};
