import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEAD_LETTER_ORIGINAL_MAX_BYTES,
  deadLetterKey,
  decodeEntryFields,
  decodePosition,
  FUTURE_TIMESTAMP_REASON,
  liveShardKey,
  MAX_POSITION_ENTRY_BYTES,
  MAX_STORED_IO_VALUE_BYTES,
  parseEntries,
  shardKey,
} from '@pitwall/contract';
import { scrapeMetric, sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { CODEC_8, CODEC_8_EXTENDED, encodeTcpAvlPacket, type AvlIoElement, type AvlRecord } from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';

// Byte and time bounds of what ingestion stores, with its default limits (INGESTION_MAX_FRAME_BYTES,
// INGESTION_MAX_FUTURE_MS): realistic packets pass; oversized IO values and entries are cut (the
// position kept, counted); positions dated too far ahead are acknowledged but dead-lettered.

const streamKey = uniqueName('bounds');
const key = shardKey(streamKey, 0);
const redis = new Redis(sharedRedisUrl());
let service: Ingestion;

function record(timestampMs: number, io: AvlIoElement[] = []): AvlRecord {
  return {
    timestampMs,
    priority: 1,
    latE7: 546_844_316,
    lonE7: 252_650_199,
    altitudeM: 126,
    headingDeg: 18,
    satellites: 10,
    speedKmh: 47,
    eventIoId: 0,
    generationType: undefined,
    io,
  };
}

function nx(id: number, bytes: number): AvlIoElement {
  return { id, width: 0, value: 0n, raw: new Uint8Array(bytes).fill(0x41) };
}

async function entries(streamName: string): Promise<(string | Buffer)[][]> {
  const reply: unknown = await redis.callBuffer('XRANGE', streamName, '-', '+');
  return parseEntries(reply).map((e) => e.fields);
}

function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  return scrapeMetric(service.metricsUrl, name, labels);
}

/** Sends one packet on a fresh connection and returns the acknowledged count. */
async function send(imei: string, frame: Buffer): Promise<number> {
  const device = await TestDevice.handshake(service.tcpPort, imei);
  try {
    device.write(frame);
    return (await device.bytes(5)).readUInt32BE(1);
  } finally {
    device.close();
  }
}

beforeAll(async () => {
  service = await startIngestion({ REDIS_URL: sharedRedisUrl(), STREAM_KEY: streamKey });
});

afterAll(async () => {
  await service?.proc.stop();
  await redis.quit();
});

describe('ingestion bounds', () => {
  it('accepts a real-sized 1,073-byte packet of 14 records with the default frame cap', async () => {
    const now = Date.now() - 60_000;
    const records = Array.from({ length: 14 }, (_, i) => record(now + i * 1_000, []));
    // Fill the records with 1- and 2-byte IO elements until the frame is exactly 1,073 bytes.
    let n = 0;
    for (;;) {
      const left = 1_073 - encodeTcpAvlPacket(CODEC_8, records).length;
      if (left === 0) break;
      const width = left % 2 === 0 ? 1 : 2; // 2 or 3 bytes per element in Codec 8
      const target = records[n % 14] as AvlRecord;
      target.io.push({ id: 1 + (n % 200), width, value: 1n, raw: undefined });
      target.io.sort((a, b) => a.width - b.width);
      n++;
    }
    expect(encodeTcpAvlPacket(CODEC_8, records)).toHaveLength(1_073);
    expect(await send('356307040009001', encodeTcpAvlPacket(CODEC_8, records))).toBe(14);
  });

  it('drops variable-length IO values over 256 bytes and elements past a 4,096-byte entry, keeping the position', async () => {
    const ts = Date.now() - 30_000;
    const oversized = record(ts, [nx(1, 10_000), nx(2, 100)]);
    const crowded = record(
      ts + 1_000,
      Array.from({ length: 20 }, (_, i) => nx(10 + i, MAX_STORED_IO_VALUE_BYTES)),
    );
    const droppedBefore = await metric('pitwall_ingestion_dropped_io_elements_total');
    expect(await send('356307040009002', encodeTcpAvlPacket(CODEC_8_EXTENDED, [oversized, crowded]))).toBe(2);
    const stored = (await entries(key)).map((fields) => ({ fields, position: decodeEntryFields(fields) }));
    const mine = stored.filter((s) => s.position.deviceId === '356307040009002');
    expect(mine).toHaveLength(2);
    const [first, second] = mine;
    expect(first?.position.recordedAtMs).toBe(BigInt(ts));
    expect(first?.position.io.map((e) => [e.id, e.raw.length])).toEqual([[2, 100]]);
    expect(second?.position.recordedAtMs).toBe(BigInt(ts + 1_000));
    expect(second?.position.io.length).toBeGreaterThan(0);
    expect(second?.position.io.length).toBeLessThan(20);
    for (const { fields } of mine) expect((fields[1] as Buffer).length).toBeLessThanOrEqual(MAX_POSITION_ENTRY_BYTES);
    expect(await metric('pitwall_ingestion_dropped_io_elements_total', { reason: 'value_too_large' })).toBe(1);
    expect(await metric('pitwall_ingestion_dropped_io_elements_total')).toBe(droppedBefore + 1 + (20 - (second?.position.io.length ?? 0)));
  });

  it('acknowledges a position dated beyond INGESTION_MAX_FUTURE_MS but dead-letters it: not in the shard, not live', async () => {
    const imei = '356307040009003';
    const now = Date.now();
    const future = now + 10 * 365 * 86_400_000;
    const shardBefore = await redis.xlen(key);
    expect(await send(imei, encodeTcpAvlPacket(CODEC_8, [record(now - 1_000), record(future), record(now + 3_600_000)]))).toBe(3);
    const stored = (await entries(key)).map((f) => decodeEntryFields(f)).filter((p) => p.deviceId === imei);
    expect(stored.map((p) => Number(p.recordedAtMs))).toEqual([now - 1_000]);
    expect(await redis.xlen(key)).toBe(shardBefore + 1);
    expect(await redis.xlen(liveShardKey(streamKey, 0))).toBe(0);
    const letters = await entries(deadLetterKey(streamKey));
    expect(letters).toHaveLength(2);
    for (const fields of letters) {
      const map = new Map<string, Buffer>();
      for (let i = 0; i + 1 < fields.length; i += 2) map.set(String(fields[i]), fields[i + 1] as Buffer);
      expect(map.get('reason')?.toString()).toBe(FUTURE_TIMESTAMP_REASON);
      expect(map.get('device_id')?.toString()).toBe(imei);
      const original = map.get('orig.p') as Buffer;
      expect(original.length).toBeLessThanOrEqual(DEAD_LETTER_ORIGINAL_MAX_BYTES);
      expect([future, now + 3_600_000]).toContain(Number(decodePosition(original).recordedAtMs));
    }
    expect(await metric('pitwall_ingestion_future_records_total')).toBe(2);
    await service.proc.waitForLine(/future_timestamp.*dead-lettered/);
  });
});
