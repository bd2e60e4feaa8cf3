// The WebSocket framing (RFC 6455) as the bench's viewers need it, and nothing more: a reader that
// splits a server's byte stream into frames without copying payloads it is not asked for, and the
// client frames a viewer sends. A viewer process holds thousands of connections; most frames are
// only counted, a sample is read whole (for latency), so reading stays far cheaper than serving.

export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** First payload bytes of every frame kept for classifying it (e.g. `{"type":"positions"`). */
export const HEAD_BYTES = 24;

export interface FrameHandler {
  /** A frame's header was read: return true to get its whole payload in `onFrame`. */
  onHeader(opcode: number, length: number): boolean;
  /**
   * A frame ended. `head` holds its first min(length, HEAD_BYTES) payload bytes (valid only during
   * the call); `payload` the whole payload when onHeader asked for it. Return false to stop reading
   * (the connection is being closed).
   */
  onFrame(opcode: number, length: number, head: Buffer, payload: Buffer | undefined): boolean;
}

/**
 * Splits a byte stream into frames, chunk by chunk, at any split of the bytes. Server frames are not
 * masked; a masked one is unmasked anyway. Fragmented messages are reported frame by frame (none of
 * the servers measured fragments what it sends).
 */
export class FrameReader {
  private readonly header = Buffer.alloc(14);
  private headerHave = 0;
  /** Bytes of payload still to come; -1 while reading a header. */
  private remaining = -1;
  private opcode = 0;
  private length = 0;
  private mask = 0;
  private readonly head = Buffer.alloc(HEAD_BYTES);
  private headHave = 0;
  private payload: Buffer | undefined;
  private payloadHave = 0;

  constructor(private readonly handler: FrameHandler) {}

  /** Consumes bytes [start, end) of `chunk` (which may be reused by the caller afterwards). */
  push(chunk: Uint8Array, start = 0, end = chunk.length): void {
    let i = start;
    while (i < end) {
      if (this.remaining < 0) {
        i = this.readHeader(chunk, i, end);
        if (this.remaining === 0 && !this.finish()) return;
        continue;
      }
      const n = Math.min(this.remaining, end - i);
      // A byte loop: for these few bytes cheaper than a subarray view and a copy.
      for (let k = i, stop = i + Math.min(HEAD_BYTES - this.headHave, n); k < stop; k++) this.head[this.headHave++] = chunk[k] ?? 0;
      if (this.payload !== undefined) {
        this.payload.set(chunk.subarray(i, i + n), this.payloadHave);
        this.payloadHave += n;
      }
      i += n;
      this.remaining -= n;
      if (this.remaining === 0 && !this.finish()) return;
    }
  }

  /** Reads header bytes from i; when the header is complete, enters the payload state. Returns the new i. */
  private readHeader(chunk: Uint8Array, start: number, end: number): number {
    let i = start;
    while (i < end) {
      this.header[this.headerHave++] = chunk[i++] ?? 0;
      if (this.headerHave < 2 || this.headerHave < this.headerLength()) continue;
      this.beginPayload();
      return i;
    }
    return i;
  }

  private headerLength(): number {
    const b1 = this.header[1] ?? 0;
    const len7 = b1 & 0x7f;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
  }

  private beginPayload(): void {
    const h = this.header;
    const b1 = h[1] ?? 0;
    const len7 = b1 & 0x7f;
    let at = 2;
    if (len7 === 126) {
      this.length = h.readUInt16BE(2);
      at = 4;
    } else if (len7 === 127) {
      this.length = h.readUInt32BE(2) * 2 ** 32 + h.readUInt32BE(6);
      at = 10;
    } else {
      this.length = len7;
    }
    this.mask = b1 & 0x80 ? h.readUInt32BE(at) : 0;
    this.opcode = (h[0] ?? 0) & 0x0f;
    this.headerHave = 0;
    this.headHave = 0;
    this.payloadHave = 0;
    this.payload = this.handler.onHeader(this.opcode, this.length) ? Buffer.allocUnsafe(this.length) : undefined;
    this.remaining = this.length;
  }

  private finish(): boolean {
    this.remaining = -1;
    const head = this.head.subarray(0, this.headHave);
    const payload = this.payload;
    this.payload = undefined;
    if (this.mask !== 0) {
      unmask(head, this.mask);
      if (payload !== undefined) unmask(payload, this.mask);
    }
    return this.handler.onFrame(this.opcode, this.length, head, payload);
  }
}

function unmask(bytes: Buffer, mask: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (bytes[i] ?? 0) ^ ((mask >>> ((3 - (i % 4)) * 8)) & 0xff);
}

/**
 * A client frame (FIN set, masked as RFC 6455 requires of clients). The mask key is zero, which
 * leaves the payload as it is: servers must accept any key, and the viewers need no XOR.
 */
export function clientFrame(opcode: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const extended = body.length < 126 ? 0 : body.length < 65_536 ? 2 : 8;
  const frame = Buffer.alloc(2 + extended + 4 + body.length);
  frame[0] = 0x80 | opcode;
  if (extended === 0) frame[1] = 0x80 | body.length;
  else if (extended === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(body.length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(body.length / 2 ** 32), 2);
    frame.writeUInt32BE(body.length % 2 ** 32, 6);
  }
  body.copy(frame, 2 + extended + 4);
  return frame;
}

/** True when `bytes` starts with `prefix` (a byte loop: Buffer.compare costs a native call per frame). */
export function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

const RX = Buffer.from('"rx":');

/**
 * Calls `onRx` with the value of every `"rx":<digits>` in a frame: the ingestion receive time of each
 * position it carries. A scan, not a JSON parse; returns how many it found.
 */
export function scanRx(payload: Buffer, onRx: (rx: number) => void): number {
  let found = 0;
  let at = payload.indexOf(RX);
  while (at !== -1) {
    let i = at + RX.length;
    let rx = 0;
    for (let c = payload[i]; c !== undefined && c >= 48 && c <= 57; c = payload[++i]) rx = rx * 10 + (c - 48);
    onRx(rx);
    found++;
    at = payload.indexOf(RX, i);
  }
  return found;
}
