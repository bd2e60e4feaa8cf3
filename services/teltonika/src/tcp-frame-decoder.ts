import { decodeAvlData, decodeCommandData } from './avl-data.js';
import { crc16Ibm } from './crc16.js';
import { FrameError } from './frame-error.js';
import { CODEC_12, type AvlPacket, type CommandPacket } from './types.js';

// Teltonika over TCP: the device opens with the IMEI handshake (2-byte length, ASCII IMEI), then
// sends frames: 4 zero bytes, 4-byte data length, AVL data, 4-byte CRC-16/IBM of the AVL data. A
// single 0xFF byte between frames is a keepalive.

export type TcpDecoderEvent =
  | { type: 'imei'; imei: string }
  | { type: 'avl'; packet: AvlPacket; frameBytes: number }
  | { type: 'command'; packet: CommandPacket }
  | { type: 'keepalive' }
  | { type: 'error'; error: FrameError };

export interface TcpFrameDecoderOptions {
  /** Largest data length accepted; a frame declaring more is skipped unbuffered. Default DEFAULT_MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
  /** Start after the handshake (for a stream that has no IMEI). Default false. */
  skipHandshake?: boolean;
}

/**
 * Default cap of a frame's data length: Teltonika devices send a few hundred bytes to a few KiB per
 * packet (a full 255-record Codec 8 packet with a few IO elements is ~10 KiB), so 16 KiB leaves room
 * without letting one connection pin 64 KiB.
 */
export const DEFAULT_MAX_FRAME_BYTES = 16_384;

const HEADER_BYTES = 8;
const CRC_BYTES = 4;
const MAX_IMEI_BYTES = 64;
const KEEPALIVE = 0xff;
const PREAMBLE = Buffer.alloc(4);
const EMPTY = Buffer.alloc(0);
const DIGITS = /^\d+$/;

/**
 * Streaming decoder of one TCP connection. Feed it every chunk as it arrives; it returns what the
 * chunk completed: the IMEI, AVL packets, Codec 12 messages, keepalives, and rejected frames (with a
 * reason). It copes with any split of the stream (byte by byte, many frames per chunk), never throws,
 * and never holds more than one frame (at most maxFrameBytes + 12 bytes): an oversized frame is
 * skipped as it streams past and garbage is dropped up to the next preamble.
 */
export class TcpFrameDecoder {
  private readonly maxFrameBytes: number;
  private awaitingImei: boolean;
  /** Unconsumed bytes shorter than a header (or a pending handshake): always small. */
  private pending: Buffer = EMPTY;
  /**
   * A frame whose size is known, filled across chunks. Its buffer grows (doubling, up to the frame's
   * size) with what the peer actually sent, not with the length it declared: eight header bytes
   * cannot pin a whole frame's worth of memory.
   */
  private assembly: Buffer | undefined;
  private assemblyTotal = 0;
  private assembled = 0;
  /** Bytes of an oversized frame still to discard. */
  private skipping = 0;
  /** Inside a run of garbage: reported once, not once per chunk. */
  private resyncing = false;

  constructor(options: TcpFrameDecoderOptions = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.awaitingImei = !(options.skipHandshake ?? false);
  }

  /** Bytes held for an incomplete frame (what the buffers take, at most twice what was received). */
  get bufferedBytes(): number {
    return this.pending.length + (this.assembly?.length ?? 0);
  }

  /** True while bytes of an incomplete frame or handshake are held, or an oversized frame is being skipped. */
  get midFrame(): boolean {
    return this.pending.length > 0 || this.assembled > 0 || this.skipping > 0;
  }

  /** True until the handshake has been decoded. */
  get handshakePending(): boolean {
    return this.awaitingImei;
  }

  push(chunk: Buffer): TcpDecoderEvent[] {
    const events: TcpDecoderEvent[] = [];
    try {
      this.consume(chunk, events);
    } catch (err) {
      // Unreachable by design (every read is bounds-checked); never let it escape to the socket.
      this.reset();
      events.push(errorEvent('malformed_record', `decoder failure: ${err instanceof Error ? err.message : String(err)}`));
    }
    return events;
  }

  /** The stream ended: reports a frame left incomplete. */
  end(): TcpDecoderEvent[] {
    const buffered = this.pending.length + this.assembled;
    const skipping = this.skipping;
    this.reset();
    if (buffered > 0) return [errorEvent('truncated', `connection ended ${buffered} bytes into a frame`)];
    if (skipping > 0) return [errorEvent('truncated', `connection ended ${skipping} bytes before the end of a skipped frame`)];
    return [];
  }

  private reset(): void {
    this.pending = EMPTY;
    this.assembly = undefined;
    this.assemblyTotal = 0;
    this.assembled = 0;
    this.skipping = 0;
  }

  private consume(chunk: Buffer, events: TcpDecoderEvent[]): void {
    let input = chunk;
    if (this.skipping > 0) {
      const n = Math.min(this.skipping, input.length);
      this.skipping -= n;
      input = input.subarray(n);
    }
    if (this.assembly !== undefined) {
      const n = Math.min(this.assemblyTotal - this.assembled, input.length);
      if (this.assembled + n > this.assembly.length) {
        const grown = Buffer.allocUnsafe(Math.min(this.assemblyTotal, Math.max(2 * this.assembly.length, this.assembled + n)));
        this.assembly.copy(grown, 0, 0, this.assembled);
        this.assembly = grown;
      }
      input.copy(this.assembly, this.assembled, 0, n);
      this.assembled += n;
      input = input.subarray(n);
      if (this.assembled < this.assemblyTotal) return;
      const frame = this.assembly;
      this.assembly = undefined;
      this.assemblyTotal = 0;
      this.assembled = 0;
      this.decodeFrame(frame, 0, frame.length, events);
    }
    if (input.length === 0) return;
    const data = this.pending.length > 0 ? Buffer.concat([this.pending, input]) : input;
    this.pending = EMPTY;
    let pos = 0;
    while (pos < data.length) {
      if (this.awaitingImei) {
        const next = this.decodeHandshake(data, pos, events);
        if (next < 0) break;
        pos = next;
        continue;
      }
      if (data[pos] === KEEPALIVE) {
        events.push({ type: 'keepalive' });
        pos++;
        continue;
      }
      const available = data.length - pos;
      if (available < HEADER_BYTES) {
        // A header in the making, unless it already cannot be a preamble.
        if (data.indexOf(PREAMBLE.subarray(0, Math.min(available, 4)), pos) !== pos) pos = this.resync(data, pos, events);
        break;
      }
      if (data.readUInt32BE(pos) !== 0) {
        pos = this.resync(data, pos, events);
        continue;
      }
      this.resyncing = false;
      const length = data.readUInt32BE(pos + 4);
      if (length > this.maxFrameBytes || length < 3) {
        events.push(
          length < 3
            ? errorEvent('bad_length', `data length ${length} is too small for a codec id and two counts`)
            : errorEvent('oversized', `data length ${length} exceeds the ${this.maxFrameBytes}-byte frame cap; skipping the frame`),
        );
        const skip = length + CRC_BYTES;
        const n = Math.min(skip, available - HEADER_BYTES);
        this.skipping = skip - n;
        pos += HEADER_BYTES + n;
        continue;
      }
      const total = HEADER_BYTES + length + CRC_BYTES;
      if (available < total) {
        this.assembly = Buffer.allocUnsafe(Math.min(total, Math.max(available, 256)));
        data.copy(this.assembly, 0, pos);
        this.assemblyTotal = total;
        this.assembled = available;
        pos = data.length;
        break;
      }
      this.decodeFrame(data, pos, pos + total, events);
      pos += total;
    }
    if (pos < data.length) this.pending = Buffer.from(data.subarray(pos));
  }

  /** Decodes the handshake at `pos`; returns the position after it, or -1 when more bytes are needed. */
  private decodeHandshake(data: Buffer, pos: number, events: TcpDecoderEvent[]): number {
    if (data.length - pos < 2) return -1;
    const length = data.readUInt16BE(pos);
    if (length === 0) {
      events.push(errorEvent('data_before_imei', 'a data frame arrived before the IMEI handshake'));
      return data.length;
    }
    if (length > MAX_IMEI_BYTES) {
      events.push(errorEvent('bad_imei', `IMEI handshake declares ${length} bytes (at most ${MAX_IMEI_BYTES})`));
      return data.length;
    }
    if (data.length - pos < 2 + length) return -1;
    const imei = data.toString('latin1', pos + 2, pos + 2 + length);
    if (!DIGITS.test(imei)) {
      events.push(errorEvent('bad_imei', `IMEI handshake is not ASCII digits: ${JSON.stringify(imei)}`));
      return data.length;
    }
    this.awaitingImei = false;
    events.push({ type: 'imei', imei });
    return pos + 2 + length;
  }

  /**
   * Garbage where a frame must start: drop bytes up to the next possible preamble (four zero bytes,
   * or a trailing run of zeros that may become one). Reported once per run of garbage.
   */
  private resync(data: Buffer, pos: number, events: TcpDecoderEvent[]): number {
    if (!this.resyncing) {
      this.resyncing = true;
      events.push(errorEvent('bad_preamble', `expected a frame preamble (4 zero bytes), got 0x${data.toString('hex', pos, pos + 4)}`));
    }
    const next = data.indexOf(PREAMBLE, pos + 1);
    if (next >= 0) return next;
    let tail = data.length;
    while (tail > pos + 1 && data.length - tail < 3 && data[tail - 1] === 0) tail--;
    return tail;
  }

  private decodeFrame(data: Buffer, start: number, end: number, events: TcpDecoderEvent[]): void {
    const dataStart = start + HEADER_BYTES;
    const dataEnd = end - CRC_BYTES;
    const expected = data.readUInt32BE(dataEnd);
    const actual = crc16Ibm(data, dataStart, dataEnd);
    if (expected !== actual) {
      events.push(errorEvent('crc_mismatch', `CRC 0x${expected.toString(16)} in the frame, 0x${actual.toString(16)} computed`));
      return;
    }
    if (data[dataStart] === CODEC_12) {
      const command = decodeCommandData(data, dataStart, dataEnd);
      events.push(command instanceof FrameError ? { type: 'error', error: command } : { type: 'command', packet: command });
      return;
    }
    const packet = decodeAvlData(data, dataStart, dataEnd);
    events.push(packet instanceof FrameError ? { type: 'error', error: packet } : { type: 'avl', packet, frameBytes: end - start });
  }
}

function errorEvent(reason: FrameError['reason'], message: string): TcpDecoderEvent {
  return { type: 'error', error: new FrameError(reason, message) };
}
