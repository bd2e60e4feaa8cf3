import { createSocket } from 'node:dgram';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntryFields, deviceShardKey, parseEntries, type Position } from '@pitwall/contract';
import { scrapeMetric, sharedRedisUrl, sleep, startService, uniqueName } from '@pitwall/testkit';
import {
  CODEC_16,
  CODEC_8,
  CODEC_8_EXTENDED,
  crc16Ibm,
  encodeImeiHandshake,
  encodeTcpAvlPacket,
  encodeUdpAvlPacket,
} from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';
import { prng, randomPastRecord } from '../../teltonika/test/random.js';
import { ioMap, loadVectors, type VectorRecord } from '../../teltonika/test/vectors.js';

// The built service (dist/main.js) against the run's Redis, through real TCP and UDP sockets.

const SHARDS = 4;
const vectors = loadVectors();
const streamKey = uniqueName('ingestion');
const redis = new Redis(sharedRedisUrl());
let service: Ingestion;

async function storedPositions(imei: string): Promise<Position[]> {
  const reply: unknown = await redis.callBuffer('XRANGE', deviceShardKey(streamKey, SHARDS, imei), '-', '+');
  return parseEntries(reply)
    .map((entry) => decodeEntryFields(entry.fields))
    .filter((p) => p.deviceId === imei);
}

function expectStored(position: Position | undefined, imei: string, record: VectorRecord, receivedWindow: [number, number]): void {
  expect(position).toBeDefined();
  if (!position) return;
  expect(position.deviceId).toBe(imei);
  expect(position.recordedAtMs).toBe(BigInt(record.timestamp_ms));
  expect(Number(position.receivedAtMs)).toBeGreaterThanOrEqual(receivedWindow[0]);
  expect(Number(position.receivedAtMs)).toBeLessThanOrEqual(receivedWindow[1]);
  expect(position.latE7 / 1e7).toBeCloseTo(record.lat, 7);
  expect(position.lonE7 / 1e7).toBeCloseTo(record.lon, 7);
  expect(position.altitudeM).toBe(record.altitude_m);
  expect(position.headingDeg).toBe(record.heading_deg);
  expect(position.satellites).toBe(record.satellites);
  expect(position.speedKmh).toBe(record.speed_kmh);
  expect(position.priority).toBe(record.priority);
  expect(position.eventIoId).toBe(record.event_io_id);
  expect(position.generationType ?? null).toBe(record.generation_type);
  expect(ioMap(position.io)).toEqual(record.io);
}

function rejected(reason: string): Promise<number> {
  return scrapeMetric(service.metricsUrl, 'pitwall_ingestion_rejected_frames_total', { transport: 'tcp', reason });
}

function packet(codec: typeof CODEC_8 | typeof CODEC_8_EXTENDED | typeof CODEC_16, records: number, seed: number): Buffer {
  const rand = prng(seed);
  return encodeTcpAvlPacket(
    codec,
    Array.from({ length: records }, () => randomPastRecord(rand, codec)),
  );
}

function ack(records: number): string {
  return records.toString(16).padStart(8, '0');
}

beforeAll(async () => {
  service = await startIngestion({
    REDIS_URL: sharedRedisUrl(),
    STREAM_KEY: streamKey,
    STREAM_SHARDS: String(SHARDS),
    INGESTION_MAX_FRAME_BYTES: '4096',
    INGESTION_MAX_BAD_FRAMES: '3',
  });
});

afterAll(async () => {
  await service?.proc.stop();
  await redis.quit();
});

describe('ingestion: Teltonika wiki vectors through real sockets', () => {
  const imei = vectors.imei_handshake_example.imei;

  it('accepts the handshake of the wiki example with 0x01', async () => {
    const device = await TestDevice.connect(service.tcpPort);
    device.write(Buffer.from(vectors.imei_handshake_example.hex, 'hex'));
    expect((await device.bytes(1)).toString('hex')).toBe(vectors.imei_handshake_example.accept_reply_hex);
    device.close();
  });

  it('stores every TCP vector and acknowledges it with the exact bytes', async () => {
    const device = await TestDevice.handshake(service.tcpPort, imei);
    const tcp = vectors.vectors.filter((v) => v.transport === 'tcp');
    let expectedReplies = '01';
    const before = Date.now();
    for (const vector of tcp) {
      device.write(Buffer.from(vector.hex, 'hex'));
      expectedReplies += vector.ack_hex;
      expect((await device.bytes(expectedReplies.length / 2)).toString('hex')).toBe(expectedReplies);
    }
    const after = Date.now();
    device.close();
    const stored = await storedPositions(imei);
    const expected = tcp.flatMap((v) => v.records);
    expect(stored).toHaveLength(expected.length);
    expected.forEach((record, i) => expectStored(stored[i], imei, record, [before, after]));
    expect(stored.map((p) => p.codec)).toEqual(
      tcp.flatMap((v) => v.records.map(() => ({ '0x8': 1, '0x8e': 2, '0x10': 3 })[v.codec_id ?? ''])),
    );
  });

  it('stores the UDP vector and acknowledges it per spec', async () => {
    const vector = vectors.vectors.find((v) => v.transport === 'udp');
    if (!vector?.imei) throw new Error('no UDP vector');
    const socket = createSocket('udp4');
    const reply = new Promise<Buffer>((resolve) => socket.once('message', resolve));
    const before = Date.now();
    socket.send(Buffer.from(vector.hex, 'hex'), service.udpPort, '127.0.0.1');
    expect((await reply).toString('hex')).toBe(vector.ack_hex);
    const after = Date.now();
    socket.close();
    const stored = await storedPositions(vector.imei);
    expect(stored).toHaveLength(vector.records.length);
    vector.records.forEach((record, i) => expectStored(stored[i], vector.imei ?? '', record, [before, after]));
    expect(await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_records_total', { transport: 'udp', codec: '8' })).toBe(1);
  });
});

describe('ingestion: bad and awkward input over TCP', () => {
  it('decodes a packet delivered byte by byte', async () => {
    const device = await TestDevice.connect(service.tcpPort);
    for (const byte of Buffer.concat([encodeImeiHandshake('356307040001001'), packet(CODEC_8_EXTENDED, 3, 1)])) {
      device.write(Buffer.from([byte]));
      await sleep(1);
    }
    expect((await device.bytes(5)).toString('hex')).toBe(`01${ack(3)}`);
    device.close();
    expect(await storedPositions('356307040001001')).toHaveLength(3);
  });

  it('acknowledges several packets sent in one write, each in order', async () => {
    const device = await TestDevice.handshake(service.tcpPort, '356307040001002');
    device.write(Buffer.concat([packet(CODEC_8, 2, 2), packet(CODEC_16, 5, 3), packet(CODEC_8_EXTENDED, 1, 4)]));
    expect((await device.bytes(13)).toString('hex')).toBe(`01${ack(2)}${ack(5)}${ack(1)}`);
    device.close();
    expect(await storedPositions('356307040001002')).toHaveLength(8);
  });

  const cases: { name: string; reason: string; bad: () => Buffer; log: RegExp }[] = [
    {
      name: 'a wrong CRC',
      reason: 'crc_mismatch',
      bad: () => {
        const frame = packet(CODEC_8_EXTENDED, 2, 5);
        frame[frame.length - 1] = (frame[frame.length - 1] ?? 0) ^ 0xff;
        return frame;
      },
      log: /frame rejected \(crc_mismatch\)/,
    },
    {
      name: 'N1 != N2 (with a valid CRC)',
      reason: 'count_mismatch',
      bad: () => {
        const frame = packet(CODEC_8, 2, 6);
        frame[frame.length - 5] = 3;
        frame.writeUInt32BE(crc16Ibm(frame, 8, frame.length - 4), frame.length - 4);
        return frame;
      },
      log: /frame rejected \(count_mismatch\)/,
    },
    {
      name: 'garbage bytes',
      reason: 'bad_preamble',
      bad: () => Buffer.from('GET / HTTP/1.1\r\nHost: ingestion\r\n\r\n', 'latin1'),
      log: /frame rejected \(bad_preamble\)/,
    },
    {
      name: 'an oversized length (the frame is skipped)',
      reason: 'oversized',
      bad: () => {
        const header = Buffer.alloc(8);
        header.writeUInt32BE(5000, 4);
        return Buffer.concat([header, Buffer.alloc(5004, 0x5a)]);
      },
      log: /5000.*frame rejected \(oversized\)/,
    },
  ];

  for (const { name, reason, bad, log } of cases) {
    it(`rejects ${name}: counted, logged, never acknowledged; the next packet still is`, async () => {
      const imei = `35630704000${String(2000 + cases.findIndex((c) => c.reason === reason)).padStart(4, '0')}`;
      const before = await rejected(reason);
      const device = await TestDevice.handshake(service.tcpPort, imei);
      device.write(bad());
      device.write(packet(CODEC_8_EXTENDED, 4, 7));
      // Exactly one acknowledgement (for the good packet) follows the handshake reply.
      expect((await device.bytes(5)).toString('hex')).toBe(`01${ack(4)}`);
      device.write(packet(CODEC_8, 1, 8));
      expect((await device.bytes(9)).toString('hex')).toBe(`01${ack(4)}${ack(1)}`);
      device.close();
      expect(await rejected(reason)).toBe(before + 1);
      await service.proc.waitForLine(log);
      expect(await storedPositions(imei)).toHaveLength(5);
    });
  }

  it('counts a truncated packet when the connection ends inside it, without acknowledging', async () => {
    const before = await rejected('truncated');
    const imei = '356307040003001';
    const device = await TestDevice.handshake(service.tcpPort, imei);
    const frame = packet(CODEC_8_EXTENDED, 3, 9);
    device.write(frame.subarray(0, frame.length - 7));
    await sleep(50);
    device.socket.end();
    await device.closed;
    expect(device.received.toString('hex')).toBe('01');
    await service.proc.waitForLine(/frame rejected \(truncated\)/);
    expect(await rejected('truncated')).toBe(before + 1);
    expect(await storedPositions(imei)).toHaveLength(0);
  });

  it('rejects a packet sent before the IMEI and closes the connection', async () => {
    const before = await rejected('data_before_imei');
    const device = await TestDevice.connect(service.tcpPort);
    device.write(packet(CODEC_8, 1, 10));
    await device.closed;
    expect(device.received.length).toBe(0);
    expect(await rejected('data_before_imei')).toBe(before + 1);
    await service.proc.waitForLine(/frame rejected \(data_before_imei\)/);
  });

  it('closes a connection that exceeds its bad-frame budget', async () => {
    const device = await TestDevice.handshake(service.tcpPort, '356307040003002');
    const bad = packet(CODEC_8, 1, 11);
    bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 1;
    for (let i = 0; i < 4; i++) device.write(bad);
    await device.closed;
    expect(device.received.toString('hex')).toBe('01');
    expect(
      await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_connections_closed_total', { reason: 'bad_frames' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('rejects malformed UDP datagrams by reason without acknowledging', async () => {
    const socket = createSocket('udp4');
    const replies: Buffer[] = [];
    socket.on('message', (m) => replies.push(m));
    const good = encodeUdpAvlPacket({
      packetId: 7,
      avlPacketId: 9,
      imei: '356307040003003',
      codec: CODEC_8,
      records: [randomPastRecord(prng(12), CODEC_8)],
    });
    const badCount = Buffer.from(good);
    badCount[badCount.length - 1] = 2;
    const before = await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_rejected_frames_total', {
      transport: 'udp',
      reason: 'count_mismatch',
    });
    socket.send(badCount, service.udpPort, '127.0.0.1');
    socket.send(good.subarray(0, 20), service.udpPort, '127.0.0.1');
    socket.send(good, service.udpPort, '127.0.0.1');
    await expect.poll(() => replies.length, { timeout: 5_000 }).toBe(1);
    expect(replies[0]?.toString('hex')).toBe('00050007010901');
    expect(
      await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_rejected_frames_total', { transport: 'udp', reason: 'count_mismatch' }),
    ).toBe(before + 1);
    expect(
      await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_rejected_frames_total', { transport: 'udp', reason: 'truncated' }),
    ).toBeGreaterThanOrEqual(1);
    socket.close();
  });

  it('is still healthy and ready after all of it', async () => {
    expect(service.proc.running).toBe(true);
    expect((await fetch(`${service.metricsUrl}/readyz`)).status).toBe(200);
  });
});

describe('ingestion: configuration', () => {
  it('exits non-zero naming REDIS_URL when it is malformed', async () => {
    const bad = await startService('ingestion', { REDIS_URL: 'not a url' }, { waitReady: false });
    const exit = await bad.proc.exited;
    expect(exit.code).not.toBe(0);
    expect(bad.proc.output()).toMatch(/REDIS_URL/);
  });
});
