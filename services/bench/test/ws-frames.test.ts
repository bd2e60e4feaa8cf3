import { describe, expect, it } from 'vitest';
import {
  clientFrame,
  FrameReader,
  HEAD_BYTES,
  OPCODE,
  scanRx,
  startsWith,
  type FrameHandler,
} from '../src/suites/live-gateway/ws-frames.js';

// The viewers' frame reader: every frame of a server's byte stream counted once with its exact
// length, whatever way TCP splits the bytes, and the frames asked for delivered whole.

/** A server frame (unmasked), with the length encodings RFC 6455 uses: 7 bits, 16 bits, 64 bits. */
function serverFrame(opcode: number, payload: Buffer, mask?: number): Buffer {
  const extended = payload.length < 126 ? 0 : payload.length < 65_536 ? 2 : 8;
  const header = Buffer.alloc(2 + extended + (mask === undefined ? 0 : 4));
  header[0] = 0x80 | opcode;
  const maskBit = mask === undefined ? 0 : 0x80;
  if (extended === 0) header[1] = maskBit | payload.length;
  else if (extended === 2) {
    header[1] = maskBit | 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header[1] = maskBit | 127;
    header.writeUInt32BE(0, 2);
    header.writeUInt32BE(payload.length, 6);
  }
  let body = payload;
  if (mask !== undefined) {
    header.writeUInt32BE(mask, 2 + extended);
    body = Buffer.from(payload.map((b, i) => b ^ ((mask >>> ((3 - (i % 4)) * 8)) & 0xff)));
  }
  return Buffer.concat([header, body]);
}

interface Seen {
  opcode: number;
  length: number;
  head: string;
  payload: string | undefined;
}

function collector(want: (opcode: number, length: number) => boolean): { handler: FrameHandler; seen: Seen[] } {
  const seen: Seen[] = [];
  return {
    seen,
    handler: {
      onHeader: want,
      onFrame: (opcode, length, head, payload) => {
        seen.push({ opcode, length, head: head.toString('latin1'), payload: payload?.toString('latin1') });
        return true;
      },
    },
  };
}

const positions = (n: number) =>
  `{"type":"positions","event_id":3,"positions":[${Array.from({ length: n }, (_, i) => `{"device_id":"${i}","ts":1,"rx":${1_700_000_000_000 + i}}`).join(',')}]}`;

const payloads = [
  Buffer.from(positions(1)),
  Buffer.from(''),
  Buffer.from('2'),
  Buffer.from(positions(30)), // > 125 bytes: 16-bit length
  Buffer.alloc(70_000, 0x61), // > 65535 bytes: 64-bit length
  Buffer.from(positions(6)),
];
const opcodes = [OPCODE.text, OPCODE.text, OPCODE.text, OPCODE.text, OPCODE.binary, OPCODE.ping];
const stream = Buffer.concat(payloads.map((p, i) => serverFrame(opcodes[i] ?? OPCODE.text, p)));

describe('FrameReader', () => {
  it('counts every frame once with its length, and its first bytes, at every split of the stream in two', () => {
    for (let split = 0; split <= stream.length; split += split < 400 ? 1 : 997) {
      const { handler, seen } = collector(() => false);
      const reader = new FrameReader(handler);
      reader.push(stream.subarray(0, split));
      reader.push(stream.subarray(split));
      expect(seen.map((s) => [s.opcode, s.length])).toEqual(payloads.map((p, i) => [opcodes[i], p.length]));
      expect(seen.map((s) => s.head)).toEqual(payloads.map((p) => p.subarray(0, HEAD_BYTES).toString('latin1')));
      expect(seen.every((s) => s.payload === undefined)).toBe(true);
    }
  });

  it('delivers whole the payloads it is asked for, fed one byte at a time', () => {
    const { handler, seen } = collector((opcode) => opcode === OPCODE.text);
    const reader = new FrameReader(handler);
    for (let i = 0; i < stream.length; i++) reader.push(stream, i, i + 1);
    expect(seen.map((s) => s.payload)).toEqual(payloads.map((p, i) => (opcodes[i] === OPCODE.text ? p.toString('latin1') : undefined)));
  });

  it('reads a range of a reused buffer without keeping it', () => {
    const { handler, seen } = collector(() => true);
    const reader = new FrameReader(handler);
    const shared = Buffer.alloc(64 * 1024);
    for (let at = 0; at < stream.length; at += 1000) {
      const n = stream.copy(shared, 7, at, Math.min(stream.length, at + 1000));
      reader.push(shared, 7, 7 + n);
      shared.fill(0xff);
    }
    expect(seen.map((s) => s.payload)).toEqual(payloads.map((p) => p.toString('latin1')));
  });

  it('unmasks a masked frame', () => {
    const { handler, seen } = collector(() => true);
    new FrameReader(handler).push(serverFrame(OPCODE.text, Buffer.from(positions(2)), 0x1234abcd));
    expect(seen[0]?.payload).toBe(positions(2));
    expect(seen[0]?.head).toBe(positions(2).slice(0, HEAD_BYTES));
  });

  it('stops reading when the handler says so', () => {
    let calls = 0;
    const reader = new FrameReader({ onHeader: () => false, onFrame: () => ++calls < 2 });
    reader.push(stream);
    expect(calls).toBe(2);
  });
});

describe('client frames', () => {
  it('are masked text frames a reader gives back unchanged, with every length encoding', () => {
    for (const text of ['{"type":"subscribe","event_id":1}', 'x'.repeat(300), 'y'.repeat(70_000)]) {
      const frame = clientFrame(OPCODE.text, text);
      expect((frame[1] ?? 0) & 0x80).toBe(0x80);
      const { handler, seen } = collector(() => true);
      new FrameReader(handler).push(frame);
      expect(seen).toEqual([{ opcode: OPCODE.text, length: text.length, head: text.slice(0, HEAD_BYTES), payload: text }]);
    }
  });
});

describe('scanRx', () => {
  it('finds the rx of every position of a frame', () => {
    const rx: number[] = [];
    expect(scanRx(Buffer.from(positions(6)), (v) => rx.push(v))).toBe(6);
    expect(rx).toEqual(Array.from({ length: 6 }, (_, i) => 1_700_000_000_000 + i));
    expect(scanRx(Buffer.from('{"type":"pong"}'), () => undefined)).toBe(0);
  });

  it('startsWith compares only the prefix', () => {
    expect(startsWith(Buffer.from(positions(1)), Buffer.from('{"type":"positions"'))).toBe(true);
    expect(startsWith(Buffer.from('{"type":"pos'), Buffer.from('{"type":"positions"'))).toBe(false);
  });
});
