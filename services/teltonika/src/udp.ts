import { avlDataSize, decodeAvlData, writeAvlData } from './avl-data.js';
import { FrameError } from './frame-error.js';
import type { AvlCodecId, AvlPacket, AvlRecord } from './types.js';

// Teltonika over UDP: one datagram = 2-byte length (of the rest), 2-byte packet id, 1 not-usable
// byte (0x01), 1-byte AVL packet id, 2-byte IMEI length, IMEI, AVL data (no CRC). The server answers
// 0x0005, the packet id, 0x01, the AVL packet id and the number of records accepted.

export interface UdpAvlPacket {
  packetId: number;
  avlPacketId: number;
  imei: string;
  packet: AvlPacket;
}

const UDP_HEADER_BYTES = 8;
const MAX_IMEI_BYTES = 64;
const DIGITS = /^\d+$/;

/** Decodes one datagram. Returns the packet or the FrameError saying why it was rejected; never throws. */
export function decodeUdpPacket(datagram: Buffer): UdpAvlPacket | FrameError {
  if (datagram.length < UDP_HEADER_BYTES)
    return new FrameError('truncated', `datagram of ${datagram.length} bytes is shorter than the UDP header`);
  const length = datagram.readUInt16BE(0);
  if (length !== datagram.length - 2) {
    return new FrameError(
      length > datagram.length - 2 ? 'truncated' : 'bad_udp_header',
      `UDP length field says ${length} bytes, the datagram carries ${datagram.length - 2}`,
    );
  }
  const packetId = datagram.readUInt16BE(2);
  const avlPacketId = datagram.readUInt8(5);
  const imeiLength = datagram.readUInt16BE(6);
  if (imeiLength === 0 || imeiLength > MAX_IMEI_BYTES || UDP_HEADER_BYTES + imeiLength > datagram.length) {
    return new FrameError('bad_imei', `UDP IMEI length ${imeiLength} is invalid for a ${datagram.length}-byte datagram`);
  }
  const imei = datagram.toString('latin1', UDP_HEADER_BYTES, UDP_HEADER_BYTES + imeiLength);
  if (!DIGITS.test(imei)) return new FrameError('bad_imei', `UDP IMEI is not ASCII digits: ${JSON.stringify(imei)}`);
  const packet = decodeAvlData(datagram, UDP_HEADER_BYTES + imeiLength, datagram.length);
  if (packet instanceof FrameError) return packet;
  return { packetId, avlPacketId, imei, packet };
}

export interface UdpPacketInit {
  packetId: number;
  avlPacketId: number;
  imei: string;
  codec: AvlCodecId;
  records: readonly AvlRecord[];
}

/** One datagram carrying `records`. */
export function encodeUdpAvlPacket(init: UdpPacketInit): Buffer {
  const size = UDP_HEADER_BYTES + init.imei.length + avlDataSize(init.codec, init.records);
  if (size - 2 > 0xffff) throw new RangeError(`a ${size}-byte datagram does not fit the 2-byte UDP length`);
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt16BE(size - 2, 0);
  buf.writeUInt16BE(init.packetId, 2);
  buf.writeUInt8(0x01, 4);
  buf.writeUInt8(init.avlPacketId, 5);
  buf.writeUInt16BE(init.imei.length, 6);
  buf.write(init.imei, UDP_HEADER_BYTES, 'latin1');
  writeAvlData(buf, UDP_HEADER_BYTES + init.imei.length, init.codec, init.records);
  return buf;
}

export interface UdpAck {
  packetId: number;
  avlPacketId: number;
  accepted: number;
}

/** The server's acknowledgement of a datagram. */
export function encodeUdpAck(ack: UdpAck): Buffer {
  const buf = Buffer.allocUnsafe(7);
  buf.writeUInt16BE(0x0005, 0);
  buf.writeUInt16BE(ack.packetId, 2);
  buf.writeUInt8(0x01, 4);
  buf.writeUInt8(ack.avlPacketId, 5);
  buf.writeUInt8(ack.accepted, 6);
  return buf;
}

/** Reads an acknowledgement datagram (device side); undefined when it is not one. */
export function decodeUdpAck(datagram: Buffer): UdpAck | undefined {
  if (datagram.length !== 7 || datagram.readUInt16BE(0) !== 0x0005) return undefined;
  return { packetId: datagram.readUInt16BE(2), avlPacketId: datagram.readUInt8(5), accepted: datagram.readUInt8(6) };
}
