import { createSocket } from 'node:dgram';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveShardKey, parseReadReply, PROCESSOR_GROUP, shardKey } from '@pitwall/contract';
import { scrapeMetric, sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { CODEC_8, encodeTcpAvlPacket, encodeUdpAvlPacket } from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';
import { prng, randomPastRecord } from '../../teltonika/test/random.js';

// Backpressure paces devices before the admission cap: above the high mark ingestion stops
// acknowledging (records go to the live-only stream, viewers still see them), below the low mark a
// resend is admitted and acknowledged.

const MAXLEN = 100;
const streamKey = uniqueName('backpressure');
const key = shardKey(streamKey, 0);
const liveKey = liveShardKey(streamKey, 0);
const redis = new Redis(sharedRedisUrl());
let service: Ingestion;

const engaged = () => scrapeMetric(service.metricsUrl, 'pitwall_ingestion_backpressure', { shard: '0' });
const heldPackets = (transport: string) =>
  scrapeMetric(service.metricsUrl, 'pitwall_ingestion_deferred_packets_total', { transport, reason: 'backpressure' });

beforeAll(async () => {
  // The writer's group exists from the start (as when the writer runs): lag is exact.
  await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '$', 'MKSTREAM');
  service = await startIngestion({
    REDIS_URL: sharedRedisUrl(),
    STREAM_KEY: streamKey,
    STREAM_MAXLEN: String(MAXLEN),
    INGESTION_BACKPRESSURE_HIGH: '0.5',
    INGESTION_BACKPRESSURE_LOW: '0.2',
    INGESTION_BACKPRESSURE_POLL_MS: '50',
  });
});

afterAll(async () => {
  await service?.proc.stop();
  await redis.quit();
});

describe('ingestion backpressure', () => {
  it('stops acknowledging above the high mark (records go live-only) and admits the resend once the processor group catches up', async () => {
    const rand = prng(42);
    const packet = () =>
      encodeTcpAvlPacket(
        CODEC_8,
        Array.from({ length: 10 }, () => randomPastRecord(rand, CODEC_8)),
      );
    const device = await TestDevice.handshake(service.tcpPort, '356307040008001');
    expect(await engaged()).toBe(0);

    // The device's own packets go through while the backlog is below the high mark (50 entries)...
    for (let i = 1; i <= 3; i++) {
      device.write(packet());
      expect((await device.bytes(1 + 4 * i)).subarray(-4).toString('hex')).toBe('0000000a');
    }
    // ...then the backlog grows past it (other devices, say) and the monitor engages.
    for (let i = 0; i < 30; i++) await redis.xadd(key, '*', 'p', 'filler');
    await waitFor('backpressure engaged', async () => (await engaged()) === 1);
    const acks = 3;
    const entriesWhileEngaged = await redis.xlen(key);
    expect(entriesWhileEngaged).toBe(60);
    const held = packet();
    device.write(held);
    await waitFor('the held packet in the live-only stream', async () => (await redis.xlen(liveKey)) === 10);

    // UDP devices on the shard are not acknowledged either.
    const udp = createSocket('udp4');
    const udpReplies: Buffer[] = [];
    udp.on('message', (m) => udpReplies.push(m));
    const udpHeldBefore = await heldPackets('udp');
    udp.send(
      encodeUdpAvlPacket({
        packetId: 1,
        avlPacketId: 1,
        imei: '356307040008002',
        codec: CODEC_8,
        records: [randomPastRecord(rand, CODEC_8)],
      }),
      service.udpPort,
      '127.0.0.1',
    );
    await waitFor('the UDP packet held', async () => (await heldPackets('udp')) > udpHeldBefore);
    expect(udpReplies).toHaveLength(0);
    // Neither the TCP packet sent while engaged is acknowledged or stored.
    expect(device.received.length).toBe(1 + 4 * acks);
    expect(await redis.xlen(key)).toBe(entriesWhileEngaged);

    // The writer reads and acknowledges everything: backlog 0, released; the device's resend of the
    // held packet is admitted and acknowledged.
    const reply: unknown = await redis.callBuffer('XREADGROUP', 'GROUP', PROCESSOR_GROUP, 'test', 'COUNT', '1000', 'STREAMS', key, '>');
    const ids = parseReadReply(reply).flatMap((batch) => batch.entries.map((e) => e.id));
    expect(ids).toHaveLength(entriesWhileEngaged);
    await redis.xack(key, PROCESSOR_GROUP, ...ids);
    await waitFor('backpressure released', async () => (await engaged()) === 0);
    expect(device.received.length).toBe(1 + 4 * acks);
    device.write(held);
    const replies = await device.bytes(1 + 4 * (acks + 1));
    expect(replies.subarray(1 + 4 * acks).toString('hex')).toBe('0000000a');
    expect(await redis.xlen(key)).toBe(entriesWhileEngaged + 10);
    device.write(packet());
    expect((await device.bytes(1 + 4 * (acks + 2))).subarray(-4).toString('hex')).toBe('0000000a');
    device.close();
    udp.close();
    await service.proc.waitForLine(/backpressure engaged/);
    await service.proc.waitForLine(/backpressure released/);
  });
});
