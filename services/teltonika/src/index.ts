export * from './types.js';
export { crc16Ibm } from './crc16.js';
export { FrameError, FRAME_REJECT_REASONS, type FrameRejectReason } from './frame-error.js';
export { decodeAvlData, decodeCommandData, encodeAvlData, avlDataSize, writeAvlData } from './avl-data.js';
export * from './tcp-frame-decoder.js';
export * from './tcp.js';
export * from './udp.js';
