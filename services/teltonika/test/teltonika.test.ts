import { describe, expect, it } from 'vitest';
import {
  CODEC_12,
  CODEC_16,
  CODEC_8,
  CODEC_8_EXTENDED,
  crc16Ibm,
  decodeAvlData,
  decodeUdpAck,
  decodeUdpPacket,
  encodeImeiHandshake,
  encodeTcpAck,
  encodeTcpAvlPacket,
  encodeTcpCommandPacket,
  encodeUdpAck,
  encodeUdpAvlPacket,
  FrameError,
  TcpFrameDecoder,
  type AvlCodecId,
  type AvlRecord,
  type TcpDecoderEvent,
} from '@pitwall/teltonika';
import { AVL_CODECS, prng, randomRecord, randomSplit } from './random.js';
import { ioMap, loadVectors, type VectorRecord } from './vectors.js';

const file = loadVectors();

function expectRecord(actual: AvlRecord, expected: VectorRecord): void {
  expect(actual.timestampMs).toBe(expected.timestamp_ms);
  expect(actual.priority).toBe(expected.priority);
  expect(actual.latE7 / 1e7).toBeCloseTo(expected.lat, 7);
  expect(actual.lonE7 / 1e7).toBeCloseTo(expected.lon, 7);
  expect(actual.altitudeM).toBe(expected.altitude_m);
  expect(actual.headingDeg).toBe(expected.heading_deg);
  expect(actual.satellites).toBe(expected.satellites);
  expect(actual.speedKmh).toBe(expected.speed_kmh);
  expect(actual.eventIoId).toBe(expected.event_io_id);
  expect(actual.generationType ?? null).toBe(expected.generation_type);
  expect(ioMap(actual.io)).toEqual(expected.io);
}

function avlEvents(events: TcpDecoderEvent[]) {
  return events.flatMap((e) => (e.type === 'avl' ? [e.packet] : []));
}

function errorReasons(events: TcpDecoderEvent[]): string[] {
  return events.flatMap((e) => (e.type === 'error' ? [e.error.reason] : []));
}

describe('Teltonika wiki vectors', () => {
  it('decodes the IMEI handshake', () => {
    const decoder = new TcpFrameDecoder();
    const events = decoder.push(Buffer.from(file.imei_handshake_example.hex, 'hex'));
    expect(events).toEqual([{ type: 'imei', imei: file.imei_handshake_example.imei }]);
    expect(encodeImeiHandshake(file.imei_handshake_example.imei).toString('hex').toUpperCase()).toBe(file.imei_handshake_example.hex);
  });

  for (const vector of file.vectors) {
    it(`decodes ${vector.name} to the documented values, CRC and acknowledgement`, () => {
      const bytes = Buffer.from(vector.hex, 'hex');
      if (vector.transport === 'tcp') {
        const crc = crc16Ibm(bytes, 8, bytes.length - 4);
        expect(crc).toBe(Number(vector.crc));
        expect(bytes.readUInt32BE(bytes.length - 4)).toBe(crc);
        const decoder = new TcpFrameDecoder({ skipHandshake: true });
        const events = decoder.push(bytes);
        expect(errorReasons(events)).toEqual([]);
        const [packet] = avlEvents(events);
        expect(packet?.codec).toBe(Number(vector.codec_id));
        expect(packet?.records).toHaveLength(vector.records.length);
        vector.records.forEach((r, i) => expectRecord(packet?.records[i] as AvlRecord, r));
        expect(encodeTcpAck(packet?.records.length ?? -1).toString('hex')).toBe(vector.ack_hex);
        // The encoder reproduces the published bytes exactly.
        expect(encodeTcpAvlPacket(packet?.codec ?? CODEC_8, packet?.records ?? []).toString('hex')).toBe(bytes.toString('hex'));
      } else {
        const decoded = decodeUdpPacket(bytes);
        if (decoded instanceof FrameError) throw decoded;
        expect(decoded.imei).toBe(vector.imei);
        expect(decoded.packet.records).toHaveLength(vector.records.length);
        vector.records.forEach((r, i) => expectRecord(decoded.packet.records[i] as AvlRecord, r));
        const ack = encodeUdpAck({ packetId: decoded.packetId, avlPacketId: decoded.avlPacketId, accepted: decoded.packet.records.length });
        expect(ack.toString('hex')).toBe(vector.ack_hex);
        expect(decodeUdpAck(ack)).toEqual({
          packetId: decoded.packetId,
          avlPacketId: decoded.avlPacketId,
          accepted: vector.records.length,
        });
        expect(encodeUdpAvlPacket({ ...decoded, codec: decoded.packet.codec, records: decoded.packet.records }).toString('hex')).toBe(
          bytes.toString('hex'),
        );
      }
    });
  }
});

describe('CRC-16/IBM', () => {
  it('matches the standard check value', () => {
    expect(crc16Ibm(Buffer.from('123456789', 'latin1'))).toBe(0xbb3d);
    expect(crc16Ibm(Buffer.alloc(0))).toBe(0);
  });
});

describe('encoders and decoders round-trip', () => {
  for (const codec of AVL_CODECS) {
    it(`Codec 0x${codec.toString(16)} over TCP and UDP`, () => {
      const rand = prng(codec);
      for (let n = 0; n < 200; n++) {
        const records = Array.from({ length: 1 + (n % 7) }, () => randomRecord(rand, codec));
        const decoder = new TcpFrameDecoder({ skipHandshake: true });
        const events = randomSplit(rand, encodeTcpAvlPacket(codec, records), 50).flatMap((c) => decoder.push(c));
        expect(avlEvents(events)).toEqual([{ codec, records }]);
        const udp = decodeUdpPacket(encodeUdpAvlPacket({ packetId: n, avlPacketId: n & 0xff, imei: '356307042441013', codec, records }));
        expect(udp).toEqual({ packetId: n, avlPacketId: n & 0xff, imei: '356307042441013', packet: { codec, records } });
      }
    });
  }

  it('rejects values that do not fit the codec when encoding', () => {
    const record = randomRecord(prng(1), CODEC_8_EXTENDED);
    record.io.push({ id: 1, width: 0, value: 0n, raw: new Uint8Array(1) });
    expect(() => encodeTcpAvlPacket(CODEC_8, [record])).toThrow(RangeError);
  });
});

describe('TcpFrameDecoder', () => {
  const imei = '356307042441013';
  const packet = (codec: AvlCodecId = CODEC_8_EXTENDED, n = 2, seed = 7) =>
    encodeTcpAvlPacket(
      codec,
      Array.from({ length: n }, () => randomRecord(prng(seed), codec)),
    );

  it('decodes byte by byte: handshake, keepalive and frames', () => {
    const stream = Buffer.concat([encodeImeiHandshake(imei), Buffer.from([0xff]), packet(), packet(CODEC_16, 3)]);
    const decoder = new TcpFrameDecoder();
    const events: TcpDecoderEvent[] = [];
    for (const byte of stream) {
      events.push(...decoder.push(Buffer.from([byte])));
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(stream.length);
    }
    expect(events.map((e) => e.type)).toEqual(['imei', 'keepalive', 'avl', 'avl']);
    expect(decoder.bufferedBytes).toBe(0);
    expect(decoder.end()).toEqual([]);
  });

  it('decodes several frames from one chunk', () => {
    const decoder = new TcpFrameDecoder();
    const events = decoder.push(Buffer.concat([encodeImeiHandshake(imei), packet(), packet(CODEC_8, 1), packet(CODEC_16, 5)]));
    expect(events.map((e) => e.type)).toEqual(['imei', 'avl', 'avl', 'avl']);
    expect(avlEvents(events).map((p) => p.records.length)).toEqual([2, 1, 5]);
  });

  it('rejects a wrong CRC and keeps decoding after it', () => {
    const bad = packet();
    bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0x01;
    const decoder = new TcpFrameDecoder({ skipHandshake: true });
    const events = decoder.push(Buffer.concat([bad, packet()]));
    expect(events.map((e) => (e.type === 'error' ? e.error.reason : e.type))).toEqual(['crc_mismatch', 'avl']);
  });

  it('rejects N1 != N2 with a valid CRC', () => {
    const frame = packet(CODEC_8, 2);
    frame[frame.length - 5] = 3;
    frame.writeUInt32BE(crc16Ibm(frame, 8, frame.length - 4), frame.length - 4);
    expect(errorReasons(new TcpFrameDecoder({ skipHandshake: true }).push(frame))).toEqual(['count_mismatch']);
  });

  it('skips an oversized frame without buffering it, then decodes the next one', () => {
    const decoder = new TcpFrameDecoder({ skipHandshake: true, maxFrameBytes: 1000 });
    const header = Buffer.alloc(8);
    header.writeUInt32BE(5000, 4);
    expect(errorReasons(decoder.push(header))).toEqual(['oversized']);
    for (let i = 0; i < 50; i++) {
      expect(decoder.push(Buffer.alloc(100, 0xaa))).toEqual([]);
      expect(decoder.bufferedBytes).toBe(0);
    }
    const events = decoder.push(Buffer.concat([Buffer.alloc(4), packet()]));
    expect(events.map((e) => e.type)).toEqual(['avl']);
  });

  it('drops garbage up to the next preamble and reports it once', () => {
    const decoder = new TcpFrameDecoder({ skipHandshake: true });
    const events = decoder.push(Buffer.concat([Buffer.from('garbage that is not a frame at all', 'latin1'), packet()]));
    expect(events.map((e) => (e.type === 'error' ? e.error.reason : e.type))).toEqual(['bad_preamble', 'avl']);
  });

  it('reports a frame cut short when the stream ends', () => {
    const decoder = new TcpFrameDecoder({ skipHandshake: true });
    const frame = packet();
    expect(decoder.push(frame.subarray(0, frame.length - 10))).toEqual([]);
    expect(errorReasons(decoder.end())).toEqual(['truncated']);
  });

  it('rejects data before the IMEI and a malformed IMEI', () => {
    expect(errorReasons(new TcpFrameDecoder().push(packet()))).toEqual(['data_before_imei']);
    expect(errorReasons(new TcpFrameDecoder().push(Buffer.from('000561626364ff', 'hex')))).toEqual(['bad_imei']);
    expect(errorReasons(new TcpFrameDecoder().push(Buffer.from('ffff', 'hex')))).toEqual(['bad_imei']);
  });

  it('rejects an unknown codec and a too-small length', () => {
    const frame = packet(CODEC_8, 1);
    frame[8] = 0x42;
    frame.writeUInt32BE(crc16Ibm(frame, 8, frame.length - 4), frame.length - 4);
    const small = Buffer.from('00000000000000020801' + '00000000', 'hex');
    const decoder = new TcpFrameDecoder({ skipHandshake: true });
    expect(errorReasons(decoder.push(frame))).toEqual(['unknown_codec']);
    expect(errorReasons(decoder.push(Buffer.concat([small, packet()])))).toEqual(['bad_length']);
  });

  it('recognises Codec 12 command responses', () => {
    const decoder = new TcpFrameDecoder({ skipHandshake: true });
    const events = decoder.push(encodeTcpCommandPacket(6, ['INI:2019/7/22 7:22 RTC:2019/7/22 7:53']));
    expect(events).toHaveLength(1);
    const event = events[0];
    expect(event?.type).toBe('command');
    if (event?.type !== 'command') return;
    expect(event.packet.codec).toBe(CODEC_12);
    expect(event.packet.type).toBe(6);
    expect(event.packet.messages.map((m) => m.toString('latin1'))).toEqual(['INI:2019/7/22 7:22 RTC:2019/7/22 7:53']);
  });

  it('decodes the Codec 12 response example of the wiki', () => {
    // getinfo response from Teltonika's Codec 12 documentation.
    const hex =
      '00000000000000900C010600000088494E493A323031392F372F323220373A3232205254433A323031392F372F323220373A3533205253543A32204552523A312053523A302042523A302043463A302046473A3020464C3A302054553A302F302055543A3020534D533A30204E4F4750533A303A3330204750533A31205341543A302052533A332052463A36352053463A31204D443A30010000C78F';
    const events = new TcpFrameDecoder({ skipHandshake: true }).push(Buffer.from(hex, 'hex'));
    expect(events[0]?.type).toBe('command');
  });
});

describe('decodeAvlData', () => {
  it('returns a FrameError for records that overrun the data', () => {
    const frame = encodeTcpAvlPacket(CODEC_8, [randomRecord(prng(3), CODEC_8)]);
    const result = decodeAvlData(frame, 8, frame.length - 10);
    expect(result).toBeInstanceOf(FrameError);
  });
});

describe('UDP', () => {
  it('rejects inconsistent datagrams with a reason', () => {
    const good = encodeUdpAvlPacket({
      packetId: 1,
      avlPacketId: 2,
      imei: '352093086403655',
      codec: CODEC_8,
      records: [randomRecord(prng(5), CODEC_8)],
    });
    const reason = (b: Buffer) => {
      const r = decodeUdpPacket(b);
      return r instanceof FrameError ? r.reason : 'ok';
    };
    expect(reason(good)).toBe('ok');
    expect(reason(good.subarray(0, 5))).toBe('truncated');
    expect(reason(good.subarray(0, good.length - 3))).toBe('truncated');
    expect(reason(Buffer.concat([good, Buffer.alloc(2)]))).toBe('bad_udp_header');
    const badImei = Buffer.from(good);
    badImei[9] = 0x41;
    expect(reason(badImei)).toBe('bad_imei');
    const badCount = Buffer.from(good);
    badCount[badCount.length - 1] = 9;
    expect(reason(badCount)).toBe('count_mismatch');
  });
});
