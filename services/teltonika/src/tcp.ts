import { avlDataSize, writeAvlData } from './avl-data.js';
import { crc16Ibm } from './crc16.js';
import { CODEC_12, type AvlCodecId, type AvlRecord } from './types.js';

/** The handshake a device opens a TCP connection with: 2-byte length, ASCII IMEI. */
export function encodeImeiHandshake(imei: string): Buffer {
  const buf = Buffer.allocUnsafe(2 + imei.length);
  buf.writeUInt16BE(imei.length, 0);
  buf.write(imei, 2, 'latin1');
  return buf;
}

/** Server's reply to the handshake: 0x01 accept, 0x00 reject. */
export const IMEI_ACCEPTED: Buffer = Buffer.from([0x01]);
export const IMEI_REJECTED: Buffer = Buffer.from([0x00]);

/** Server's acknowledgement of a TCP AVL packet: the number of records accepted, 4 bytes big-endian. */
export function encodeTcpAck(accepted: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32BE(accepted, 0);
  return buf;
}

/** A complete TCP frame: preamble, data length, AVL data, CRC-16/IBM. */
export function encodeTcpAvlPacket(codec: AvlCodecId, records: readonly AvlRecord[]): Buffer {
  const dataBytes = avlDataSize(codec, records);
  const buf = Buffer.allocUnsafe(8 + dataBytes + 4);
  buf.writeUInt32BE(0, 0);
  buf.writeUInt32BE(dataBytes, 4);
  const end = writeAvlData(buf, 8, codec, records);
  buf.writeUInt32BE(crc16Ibm(buf, 8, end), end);
  return buf;
}

/** A Codec 12 TCP frame (type 5 = command to a device, 6 = a device's response). */
export function encodeTcpCommandPacket(type: number, messages: readonly (Buffer | string)[]): Buffer {
  const bodies = messages.map((m) => (typeof m === 'string' ? Buffer.from(m, 'latin1') : m));
  const dataBytes = 3 + bodies.reduce((sum, b) => sum + 5 + b.length, 0);
  const buf = Buffer.allocUnsafe(8 + dataBytes + 4);
  buf.writeUInt32BE(0, 0);
  buf.writeUInt32BE(dataBytes, 4);
  let pos = buf.writeUInt8(CODEC_12, 8);
  pos = buf.writeUInt8(bodies.length, pos);
  for (const body of bodies) {
    pos = buf.writeUInt8(type, pos);
    pos = buf.writeUInt32BE(body.length, pos);
    pos += body.copy(buf, pos);
  }
  pos = buf.writeUInt8(bodies.length, pos);
  buf.writeUInt32BE(crc16Ibm(buf, 8, pos), pos);
  return buf;
}
