import { describe, expect, it } from 'vitest';
import type { RespConnection, ShardConnections } from '@pitwall/streams';
import { GroupConsumer } from '@pitwall/writer';

// GroupConsumer against stand-in connections: one command per shard key, and a quiet shard's
// blocking read never holds up a busy one.

/** An XREADGROUP reply in RESP2 bytes: one stream with `ids` (each entry one field `p`). */
function readReply(key: string, ids: readonly string[]): Buffer {
  const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  if (ids.length === 0) return Buffer.from('*-1\r\n');
  const entries = ids.map((id) => `*2\r\n${bulk(id)}*2\r\n${bulk('p')}${bulk('x')}`).join('');
  return Buffer.from(`*1\r\n*2\r\n${bulk(key)}*${ids.length}\r\n${entries}`);
}

interface Sent {
  key: string;
  role: 'read' | 'ack';
  command: string;
  reply: (bytes: Buffer) => void;
}

/** Connections that record every command and reply only when the test says so. */
function standIns(): { connections: ShardConnections; sent: Sent[] } {
  const sent: Sent[] = [];
  const connection = (key: string, role: 'read' | 'ack') =>
    ({
      send: (command: Buffer) =>
        new Promise<Buffer>((resolve) => sent.push({ key, role, command: command.toString('latin1'), reply: resolve })),
    }) as unknown as RespConnection;
  const connections = { connection, failed: () => undefined } as unknown as ShardConnections;
  return { connections, sent };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('GroupConsumer', () => {
  const keys = ['s:{0}', 's:{1}'];
  const options = { keys, consumer: 'w1', count: 10, maxBytes: 64 * 1024 * 1024, blockMs: 1_000 };

  it('reads every shard with a command of its own, on that shard’s read connection', async () => {
    const { connections, sent } = standIns();
    const consumer = new GroupConsumer(connections, options);
    void consumer.readNew(true);
    await flush();
    expect(sent.map((s) => [s.key, s.role])).toEqual([
      ['s:{0}', 'read'],
      ['s:{1}', 'read'],
    ]);
    for (const { key, command } of sent) {
      expect(command).toContain(key);
      expect(command).not.toContain(keys.find((k) => k !== key));
    }
  });

  it('returns what a busy shard brought while a quiet shard’s read still blocks, and collects that read later', async () => {
    const { connections, sent } = standIns();
    const consumer = new GroupConsumer(connections, options);
    const first = consumer.readNew(true);
    await flush();
    sent[1]?.reply(readReply('s:{1}', ['1-0', '1-1']));
    const { batches } = await first;
    expect(batches.map((b) => [b.key, b.length])).toEqual([['s:{1}', 2]]);

    // The next read sends a new command to the busy shard only: shard {0}'s read is still in flight.
    const second = consumer.readNew(true);
    await flush();
    expect(sent.map((s) => s.key)).toEqual(['s:{0}', 's:{1}', 's:{1}']);
    sent[0]?.reply(readReply('s:{0}', ['2-0']));
    expect((await second).batches.map((b) => [b.key, b.length])).toEqual([['s:{0}', 1]]);
    sent[2]?.reply(readReply('s:{1}', []));
  });

  it('without BLOCK, returns every shard’s entries together (one batch, one transaction)', async () => {
    const { connections, sent } = standIns();
    const consumer = new GroupConsumer(connections, options);
    const read = consumer.readNew(false);
    await flush();
    expect(sent.map((s) => s.command.includes('BLOCK'))).toEqual([false, false]);
    sent[0]?.reply(readReply('s:{0}', ['1-0']));
    await flush();
    sent[1]?.reply(readReply('s:{1}', ['1-1']));
    expect((await read).batches.map((b) => b.key)).toEqual(['s:{0}', 's:{1}']);
  });

  it('comes back empty only when every shard did', async () => {
    const { connections, sent } = standIns();
    const consumer = new GroupConsumer(connections, options);
    let done = false;
    const read = consumer.readNew(true).then((batches) => {
      done = true;
      return batches;
    });
    await flush();
    sent[0]?.reply(readReply('s:{0}', []));
    await flush();
    expect(done).toBe(false);
    sent[1]?.reply(readReply('s:{1}', []));
    expect((await read).batches).toEqual([]);
  });

  it('acknowledges and claims on each shard’s ack connection, one XACK per shard', async () => {
    const { connections, sent } = standIns();
    const consumer = new GroupConsumer(connections, options);
    const pending = consumer.readPending(new Map(keys.map((k) => [k, '0'])));
    await flush();
    expect(sent.map((s) => [s.key, s.role])).toEqual([
      ['s:{0}', 'ack'],
      ['s:{1}', 'ack'],
    ]);
    sent[0]?.reply(readReply('s:{0}', ['3-0']));
    sent[1]?.reply(Buffer.from('*1\r\n*2\r\n$5\r\ns:{1}\r\n*0\r\n'));
    const { batches, exhausted } = await pending;
    expect(batches.map((b) => b.key)).toEqual(['s:{0}']);
    expect(exhausted).toEqual(['s:{1}']);
  });
});
