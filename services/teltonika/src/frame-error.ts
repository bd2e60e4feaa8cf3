/**
 * Why a frame was rejected. Stable: servers count rejects by it (a metric label) and tests match it.
 * - `bad_imei`: the handshake is not a 2-byte length and 1-64 ASCII digits
 * - `data_before_imei`: a data frame (length 0, i.e. a preamble) where the IMEI handshake belongs
 * - `bad_preamble`: bytes where a frame must start are not the four zero bytes (garbage; resynchronised)
 * - `bad_length`: the data length is too small to hold a codec id and two record counts
 * - `oversized`: the data length exceeds the frame size cap (the frame is skipped, never buffered)
 * - `crc_mismatch`: CRC-16/IBM of the AVL data differs from the frame's CRC
 * - `unknown_codec`: a codec id this decoder does not handle
 * - `count_mismatch`: Number of Data 1 differs from Number of Data 2
 * - `malformed_record`: the records do not fit the AVL data, or bytes are left over after them
 * - `truncated`: the stream or datagram ended inside a frame
 * - `bad_udp_header`: a UDP datagram's length field or header is inconsistent
 */
export type FrameRejectReason =
  | 'bad_imei'
  | 'data_before_imei'
  | 'bad_preamble'
  | 'bad_length'
  | 'oversized'
  | 'crc_mismatch'
  | 'unknown_codec'
  | 'count_mismatch'
  | 'malformed_record'
  | 'truncated'
  | 'bad_udp_header';

export const FRAME_REJECT_REASONS: readonly FrameRejectReason[] = [
  'bad_imei',
  'data_before_imei',
  'bad_preamble',
  'bad_length',
  'oversized',
  'crc_mismatch',
  'unknown_codec',
  'count_mismatch',
  'malformed_record',
  'truncated',
  'bad_udp_header',
];

/** A rejected Teltonika frame. Decoders return it, never throw it. Code `TELTONIKA_FRAME_INVALID`. */
export class FrameError extends Error {
  readonly code = 'TELTONIKA_FRAME_INVALID';
  override readonly name = 'FrameError';
  constructor(
    readonly reason: FrameRejectReason,
    message: string,
  ) {
    super(message);
  }
}
