/** Codec ids on the wire. */
export const CODEC_8 = 0x08;
export const CODEC_8_EXTENDED = 0x8e;
export const CODEC_16 = 0x10;
export const CODEC_12 = 0x0c;

/** Codecs that carry AVL records. */
export type AvlCodecId = typeof CODEC_8 | typeof CODEC_8_EXTENDED | typeof CODEC_16;

export function isAvlCodec(codec: number): codec is AvlCodecId {
  return codec === CODEC_8 || codec === CODEC_8_EXTENDED || codec === CODEC_16;
}

/** Wire width of an IO element in bytes; 0 for a variable-length (NX, Codec 8 Extended) element. */
export type IoWidth = 0 | 1 | 2 | 4 | 8;

export interface AvlIoElement {
  id: number;
  width: IoWidth;
  /** Fixed-size value, unsigned big-endian on the wire; 0n for NX elements. */
  value: bigint;
  /** Value of an NX element (a copy, safe to keep); undefined for fixed-size elements. */
  raw: Uint8Array | undefined;
}

/** One AVL record, field for field as on the wire. */
export interface AvlRecord {
  /** Device GNSS time, ms since the Unix epoch. */
  timestampMs: number;
  /** 0 low, 1 high, 2 panic. */
  priority: number;
  /** WGS84 in 1e-7 degrees, signed (two's complement on the wire). */
  latE7: number;
  lonE7: number;
  /** Metres above sea level, signed 16 bit. */
  altitudeM: number;
  /** Degrees clockwise from north. */
  headingDeg: number;
  satellites: number;
  speedKmh: number;
  /** IO id that triggered the record; 0 when none did. */
  eventIoId: number;
  /** Codec 16 generation type (0-7); undefined in the other codecs. */
  generationType: number | undefined;
  /** IO elements in wire order (grouped by width: 1, 2, 4, 8, then NX). */
  io: AvlIoElement[];
}

export interface AvlPacket {
  codec: AvlCodecId;
  records: AvlRecord[];
}

/** A Codec 12 frame: a command (type 5, server to device) or a response (type 6, device to server). */
export interface CommandPacket {
  codec: typeof CODEC_12;
  type: number;
  /** Each message's bytes (usually ASCII text). */
  messages: Buffer[];
}
