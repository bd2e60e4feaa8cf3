import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrapeMetric, sharedRedisUrl, uniqueName, waitFor } from '@pitwall/testkit';
import { encodeImeiHandshake, encodeTcpCommandPacket } from '@pitwall/teltonika';
import { startIngestion, TestDevice, type Ingestion } from './helpers.js';

// A flood of bad devices must not flood the logs: every per-device and per-packet line goes through
// the limiter (at most 20 per kind of line per 10 s, then one line counting what was suppressed),
// and Codec 12 responses are logged at debug, truncated, never their full content at info.

let service: Ingestion;

beforeAll(async () => {
  service = await startIngestion({ REDIS_URL: sharedRedisUrl(), STREAM_KEY: uniqueName('logs'), LOG_LEVEL: 'info' });
});

afterAll(async () => {
  await service?.proc.stop();
});

/** Output lines of the service logged at or after `sinceMs`. */
function linesSince(sinceMs: number): string[] {
  return service.proc.lines.filter((line) => {
    const time = /"time":"([^"]+)"/.exec(line)?.[1];
    return time !== undefined && Date.parse(time) >= sinceMs;
  });
}

describe('ingestion logs under a flood', () => {
  it('stays bounded: 100 bad handshakes, 110 bad frames and 200 large Codec 12 responses', async () => {
    const started = Date.now();
    // 100 connections whose handshake is not an IMEI.
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        const device = await TestDevice.connect(service.tcpPort);
        device.write(encodeImeiHandshake('not-an-imei-xyz'));
        await device.closedByServer();
      }),
    );
    // 200 Codec 12 responses of ~6 KB each, then 100 frames with a bad CRC, from 10 devices.
    const response = encodeTcpCommandPacket(6, ['A'.repeat(2_000), 'B'.repeat(2_000), 'C'.repeat(2_000)]);
    const badCrc = Buffer.from(response);
    badCrc.writeUInt32BE(0xdead, badCrc.length - 4);
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const device = await TestDevice.handshake(service.tcpPort, `35630704002000${i}`);
        for (let n = 0; n < 20; n++) device.write(response);
        for (let n = 0; n < 11; n++) device.write(badCrc);
        await device.closedByServer(); // closed for exceeding its bad-frame budget
      }),
    );
    await waitFor('every frame counted', async () => {
      const crc = await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_rejected_frames_total', {
        transport: 'tcp',
        reason: 'crc_mismatch',
      });
      const commands = await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_command_responses_total');
      return crc === 110 && commands === 200;
    });
    const lines = linesSince(started);
    // Three kinds of line (bad handshake, CRC, too many bad frames), at most 20 each per window.
    expect(lines.length).toBeLessThanOrEqual(70);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(2_000);
    expect(lines.some((l) => l.includes('AAAAAAAAAA'))).toBe(false);
    expect(await scrapeMetric(service.metricsUrl, 'pitwall_ingestion_log_lines_suppressed_total')).toBeGreaterThan(0);
    // When the window ends, one line per kind says how many were suppressed.
    const summary = await service.proc.waitForLine(/"suppressed":\d+.*similar per-device log lines suppressed/, 20_000);
    expect(summary).toMatch(/frame rejected/);
  }, 60_000);
});
