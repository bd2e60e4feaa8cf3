import { groupsOf, shardGroupState, streamInfoOf } from '@pitwall/streams';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveShardKey, PROCESSOR_GROUP, shardKey } from '@pitwall/contract';
import { createTestDatabase, scrapeMetric, sharedRedisUrl, startService, uniqueName, waitFor, type ServiceProcess } from '@pitwall/testkit';
import { CODEC_8, encodeTcpAvlPacket, type AvlRecord } from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';

// The trimming scenario of issue 14: the `processor` group stalled at STREAM_MAXLEN=10,000, TWO
// ingestion processes, 20 connections sending 255-record packets. Before, XADD MAXLEN ~ trimmed
// acknowledged records the writer had not read (backpressure was only polled). Now the admission
// script admits a packet only while the group's backlog + its records <= the cap: once a writer runs,
// every record a device saw acknowledged is a row in PostgreSQL.

const MAXLEN = 10_000;
const CONNECTIONS = 20;
const RECORDS = 255;
const ROUNDS = 6;
/** How long a test device waits for an acknowledgement before it gives the packet up (and reconnects), as a device does. */
const ACK_TIMEOUT_MS = 2_000;

const streamKey = uniqueName('durability');
const key = shardKey(streamKey, 0);
const redis = new Redis(sharedRedisUrl());
const ingestions: Ingestion[] = [];
let writer: ServiceProcess | undefined;

function imeiOf(n: number): string {
  return `35630704${String(100_000 + n).padStart(7, '0')}`;
}

/** `count` plausible records of one device, one second apart from `startMs`. */
function records(startMs: number, count: number): AvlRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    timestampMs: startMs + i * 1_000,
    priority: 0,
    latE7: 504_000_000 + i,
    lonE7: 59_000_000 + i,
    altitudeM: 400,
    headingDeg: 90,
    satellites: 10,
    speedKmh: 120,
    eventIoId: 0,
    generationType: undefined,
    io: [{ id: 1, width: 1, value: 1n, raw: undefined }],
  }));
}

/** Sends each packet once; returns the keys (imei/ts) of the records acknowledged. */
async function drive(port: number, imei: string, packets: AvlRecord[][]): Promise<{ acked: string[]; refused: number }> {
  const acked: string[] = [];
  let refused = 0;
  let device = await TestDevice.handshake(port, imei);
  for (const packet of packets) {
    const before = device.received.length;
    device.write(encodeTcpAvlPacket(CODEC_8, packet));
    const ok = await device.bytes(before + 4, ACK_TIMEOUT_MS).then(
      (bytes) => bytes.readUInt32BE(before) === packet.length,
      () => false,
    );
    if (ok) {
      for (const r of packet) acked.push(`${imei}/${r.timestampMs}`);
      continue;
    }
    // Not acknowledged: the device keeps the records; a new connection for the next packet (an
    // acknowledgement arriving late on the old one does not count).
    refused++;
    device.close();
    device = await TestDevice.handshake(port, imei);
  }
  device.close();
  return { acked, refused };
}

beforeAll(async () => {
  // The writer's group exists (created by a writer that has since stalled): nothing reads it.
  await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '$', 'MKSTREAM');
  for (let i = 0; i < 2; i++) {
    ingestions.push(
      await startIngestion({
        REDIS_URL: sharedRedisUrl(),
        STREAM_KEY: streamKey,
        STREAM_MAXLEN: String(MAXLEN),
        LOG_LEVEL: 'warn',
      }),
    );
  }
});

afterAll(async () => {
  await writer?.proc.stop();
  await Promise.all(ingestions.map((i) => i.proc.stop()));
  await redis.quit();
});

describe('admission with the processor group stalled at STREAM_MAXLEN', () => {
  it('acknowledges only what the group will read: 0 acknowledged records missing in PostgreSQL once a writer runs', async () => {
    const base = Date.now() - 6 * 3_600_000;
    const results = await Promise.all(
      Array.from({ length: CONNECTIONS }, (_, c) => {
        const ingestion = ingestions[c % 2] as Ingestion;
        const packets = Array.from({ length: ROUNDS }, (_, r) => records(base + r * RECORDS * 1_000, RECORDS));
        return drive(ingestion.tcpPort, imeiOf(c), packets);
      }),
    );
    const acked = results.flatMap((r) => r.acked);
    const refusedPackets = results.reduce((sum, r) => sum + r.refused, 0);
    // The scenario reached the cap: far more was sent than the cap admits, and the rest was refused.
    expect(refusedPackets).toBeGreaterThan(0);
    // What the group can read is what the cap allowed (nothing was trimmed to make room).
    const backlogAtCap = (await shardGroupState(redis, key, PROCESSOR_GROUP)).backlog.backlog;
    const liveOnly = await redis.xlen(liveShardKey(streamKey, 0));

    // A writer comes back and drains the shard.
    const databaseUrl = await createTestDatabase('durability');
    writer = await startService('writer', {
      DATABASE_URL: databaseUrl,
      REDIS_URL: sharedRedisUrl(),
      STREAM_KEY: streamKey,
      INSTANCE_ID: 'w1',
      WRITER_BLOCK_MS: '200',
    });
    await waitFor(
      'the processor group drained',
      async () => {
        // Everything delivered (last-delivered-id at the stream's last id) and acknowledged.
        const group = (await groupsOf(redis, key))?.find((g) => g.name === PROCESSOR_GROUP);
        const stream = await streamInfoOf(redis, key);
        return group?.pending === 0 && group.lastDeliveredId === stream?.lastGeneratedId;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    let stored: Set<string>;
    try {
      const rows = await client.query<{ k: string }>(
        `SELECT device_id || '/' || (extract(epoch FROM recorded_at) * 1000)::bigint AS k FROM positions`,
      );
      stored = new Set(rows.rows.map((r) => r.k));
    } finally {
      await client.end();
    }
    const missing = acked.filter((k) => !stored.has(k));
    expect({ acked: acked.length, missing: missing.length }).toEqual({ acked: acked.length, missing: 0 });
    expect(acked.length).toBeGreaterThan(0);
    expect(acked.length).toBeLessThanOrEqual(MAXLEN);
    expect(backlogAtCap).toBeLessThanOrEqual(MAXLEN);
    // Records not admitted went to the live-only stream (viewers still saw them).
    expect(liveOnly).toBeGreaterThan(0);
    let refusedRecords = 0;
    for (const ingestion of ingestions) {
      refusedRecords += await scrapeMetric(ingestion.metricsUrl, 'pitwall_ingestion_refused_records_total');
    }
    expect(refusedRecords).toBeGreaterThan(0);
  }, 180_000);
});
