import { describe, expect, it } from 'vitest';
import {
  decodeAvlData,
  decodeUdpPacket,
  encodeImeiHandshake,
  encodeTcpAvlPacket,
  encodeUdpAvlPacket,
  FrameError,
  TcpFrameDecoder,
} from '@pitwall/teltonika';
import { AVL_CODECS, prng, randomBytes, randomInt, randomRecord, randomSplit } from './random.js';
import { loadVectors } from './vectors.js';

// Property: whatever bytes arrive, in whatever split, the decoders return (events or FrameErrors),
// never throw, hold at most one capped frame, and finish (each push is bounded by its input).

const MAX_FRAME = 2048;
const CASES = 3000;

function validPackets(rand: () => number): Buffer[] {
  const packets: Buffer[] = loadVectors().vectors.map((v) => Buffer.from(v.hex, 'hex'));
  for (const codec of AVL_CODECS) {
    for (let i = 0; i < 5; i++) {
      const records = Array.from({ length: randomInt(rand, 1, 4) }, () => randomRecord(rand, codec));
      packets.push(encodeTcpAvlPacket(codec, records));
      packets.push(encodeUdpAvlPacket({ packetId: i, avlPacketId: i, imei: '356307040000001', codec, records }));
    }
  }
  return packets;
}

function mutate(rand: () => number, input: Buffer): Buffer {
  let data = Buffer.from(input);
  const edits = randomInt(rand, 1, 6);
  for (let e = 0; e < edits; e++) {
    const op = randomInt(rand, 0, 5);
    const at = randomInt(rand, 0, Math.max(0, data.length - 1));
    if (op === 0 && data.length > 0) data[at] = randomInt(rand, 0, 255);
    else if (op === 1 && data.length > 0) data[at] = (data[at] ?? 0) ^ (1 << randomInt(rand, 0, 7));
    else if (op === 2) data = Buffer.concat([data.subarray(0, at), randomBytes(rand, randomInt(rand, 1, 16)), data.subarray(at)]);
    else if (op === 3) data = Buffer.concat([data.subarray(0, at), data.subarray(at + randomInt(rand, 1, 16))]);
    else if (op === 4) data = data.subarray(0, at);
    else if (data.length >= 8) data.writeUInt32BE(randomInt(rand, 0, 0xffffffff), Math.min(at, data.length - 4));
  }
  return data;
}

/** A rejection found by the bounds checks themselves, not by the safety net catching an exception. */
function expectExplicitRejection(error: unknown): void {
  expect(error).toBeInstanceOf(FrameError);
  expect((error as FrameError).message).not.toMatch(/decoder failure|could not be decoded/);
}

function feed(rand: () => number, data: Buffer, handshake: boolean): void {
  const decoder = new TcpFrameDecoder({ maxFrameBytes: MAX_FRAME, skipHandshake: !handshake });
  const input = handshake ? Buffer.concat([encodeImeiHandshake('356307040000001'), data]) : data;
  for (const chunk of randomSplit(rand, input, randomInt(rand, 1, 300))) {
    const events = decoder.push(chunk);
    expect(events.length).toBeLessThanOrEqual(chunk.length + 1);
    for (const event of events) if (event.type === 'error') expectExplicitRejection(event.error);
    expect(decoder.bufferedBytes).toBeLessThanOrEqual(MAX_FRAME + 12);
  }
  decoder.end();
  expect(decoder.bufferedBytes).toBe(0);
}

describe('decoder fuzzing (seeded)', () => {
  it(`random bytes never throw out of the decoders (${CASES} cases)`, () => {
    const rand = prng(0x5eed);
    for (let n = 0; n < CASES; n++) {
      const data = randomBytes(rand, randomInt(rand, 0, 600));
      // Bias some cases towards plausible headers so the deeper paths run too.
      if (n % 3 === 0 && data.length >= 8) {
        data.writeUInt32BE(0, 0);
        data.writeUInt32BE(randomInt(rand, 0, 700), 4);
      }
      expect(() => feed(rand, data, n % 2 === 0)).not.toThrow();
      expect(() => decodeUdpPacket(data)).not.toThrow();
      expect(() => decodeAvlData(data, 0, data.length)).not.toThrow();
    }
  });

  it(`mutated valid packets never throw out of the decoders (${CASES} cases)`, () => {
    const rand = prng(0xfa11);
    const packets = validPackets(rand);
    for (let n = 0; n < CASES; n++) {
      const base = packets[n % packets.length] ?? Buffer.alloc(0);
      const mutated = mutate(rand, n % 4 === 0 ? Buffer.concat([base, base]) : base);
      expect(() => feed(rand, mutated, n % 2 === 1)).not.toThrow();
      const udp = decodeUdpPacket(mutated);
      if (udp instanceof FrameError) expectExplicitRejection(udp);
      else expect(typeof udp.imei).toBe('string');
      const avl = decodeAvlData(mutated, 8, mutated.length);
      if (avl instanceof FrameError) expectExplicitRejection(avl);
      else expect(Array.isArray(avl.records)).toBe(true);
    }
  });
});
