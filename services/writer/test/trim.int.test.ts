import { PROCESSOR_GROUP } from '@pitwall/contract';
import { createLogger } from '@pitwall/platform';
import { sharedRedisUrl, uniqueName } from '@pitwall/testkit';
import { RespConnection } from '@pitwall/streams';
import { StreamTrimmer } from '@pitwall/writer';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';

// The writer's trim of a shard stream (XTRIM MINID below what group processor has not acknowledged),
// against a real Redis: entries pending on a stalled consumer and entries never delivered stay.

const redis = new Redis(sharedRedisUrl());
const connection = new RespConnection({
  url: sharedRedisUrl(),
  name: 'writer:test:trim0',
  logger: createLogger('test', 'silent'),
  replyTimeoutMs: 5_000,
});
afterAll(async () => {
  await connection.close();
  redis.disconnect();
});

/** Ids of the stream's entries, oldest first. */
async function ids(key: string): Promise<string[]> {
  return (await redis.xrange(key, '-', '+')).map(([id]) => id);
}

/** XINFO GROUPS lag of group processor (null when Redis cannot tell). */
async function lagOf(key: string): Promise<number | null> {
  const groups = (await redis.call('XINFO', 'GROUPS', key)) as unknown[][];
  const group = groups.find((g) => g[g.indexOf('name') + 1] === PROCESSOR_GROUP) ?? [];
  return group[group.indexOf('lag') + 1] as number | null;
}

/** Delivers up to `count` new entries to `consumer`; returns their ids. */
async function deliver(key: string, consumer: string, count: number): Promise<string[]> {
  const reply = (await redis.xreadgroup('GROUP', PROCESSOR_GROUP, consumer, 'COUNT', count, 'STREAMS', key, '>')) as
    [string, [string, string[]][]][] | null;
  return (reply?.[0]?.[1] ?? []).map(([id]) => id);
}

/** A stream of 30 entries written an hour ago (ids in the past), with group processor from the start. */
async function oldStream(): Promise<{ key: string; all: string[] }> {
  const key = uniqueName('trim');
  await redis.xgroup('CREATE', key, PROCESSOR_GROUP, '0', 'MKSTREAM');
  const base = Date.now() - 3_600_000;
  for (let i = 1; i <= 30; i++) await redis.xadd(key, `${base}-${i}`, 'p', 'x');
  return { key, all: await ids(key) };
}

describe('writer stream trim', () => {
  it('never trims an entry pending on a stalled consumer nor one not delivered yet; trims what is acknowledged', async () => {
    const { key, all } = await oldStream();
    const trimmer = new StreamTrimmer(connection, { keys: [key], retentionMs: 0 });
    const stalled = await deliver(key, 'stalled', 10); // pending, never acknowledged
    const done = await deliver(key, 'live', 10);
    await redis.xack(key, PROCESSOR_GROUP, ...done); // 11..20 acknowledged; 21..30 undelivered

    expect(await trimmer.trim(key)).toBe(0);
    expect(await ids(key)).toEqual(all);

    await redis.xack(key, PROCESSOR_GROUP, ...stalled.slice(0, 5));
    expect(await trimmer.trim(key)).toBe(5);
    expect(await ids(key)).toEqual(all.slice(5));

    await redis.xack(key, PROCESSOR_GROUP, ...stalled.slice(5));
    // Everything before the first undelivered entry is acknowledged: it goes, the undelivered stay.
    expect(await trimmer.trim(key)).toBe(15);
    expect(await ids(key)).toEqual(all.slice(20));
    // The group's lag stays known after a trim (ingestion's admission reads it): 10 undelivered.
    expect(await lagOf(key)).toBe(10);

    const rest = await deliver(key, 'live', 100);
    expect(await trimmer.trim(key)).toBe(0);
    await redis.xack(key, PROCESSOR_GROUP, ...rest);
    expect(await trimmer.trim(key)).toBe(10);
    expect(await redis.xlen(key)).toBe(0);
  });

  it('keeps the last WRITER_STREAM_RETENTION_MS of acknowledged entries for the gateways', async () => {
    const { key, all } = await oldStream();
    const recent = [await redis.xadd(key, '*', 'p', 'y'), await redis.xadd(key, '*', 'p', 'y')];
    await redis.xack(key, PROCESSOR_GROUP, ...(await deliver(key, 'live', 100)));
    const trimmer = new StreamTrimmer(connection, { keys: [key], retentionMs: 60_000 });
    expect(await trimmer.trim(key)).toBe(all.length);
    expect(await ids(key)).toEqual(recent);
  });

  it('trims nothing of a stream without group processor, and nothing of a missing stream', async () => {
    const key = uniqueName('trim');
    await redis.xadd(key, `${Date.now() - 3_600_000}-1`, 'p', 'x');
    const trimmer = new StreamTrimmer(connection, { keys: [key], retentionMs: 0 });
    expect(await trimmer.trim(key)).toBe(0);
    expect(await redis.xlen(key)).toBe(1);
    expect(await trimmer.trim(uniqueName('missing'))).toBe(0);
  });
});
