export * from './gen/pitwall/telemetry/v1/position_pb.js';
export * from './keys.js';
export * from './entry.js';
export * from './imei.js';
export { StreamEntryError } from './stream-entry-error.js';
export * from './stream-reply.js';
export * from './dead-letter.js';
export * from './position-fields.js';
export { deviceIdField, encodePositions, type DroppedIo, type PositionInput, type PositionIoInput } from './position-encoder.js';
