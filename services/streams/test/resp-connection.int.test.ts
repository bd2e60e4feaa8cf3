import net from 'node:net';
import { createLogger } from '@pitwall/platform';
import { RedisServer, waitFor } from '@pitwall/testkit';
import {
  encodeCommand,
  parseStreamRead,
  RedisConnectionError,
  RedisReplyError,
  RespConnection,
  RespCursor,
  type StreamEntries,
} from '@pitwall/streams';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A service's own stream connection (RespConnection) against a real redis-server of this file's own (stopped and
// restarted here), and against a TCP server that never answers.

const logger = createLogger('test', 'silent');
let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = server.client();
});

afterAll(async () => {
  redis.disconnect();
  await server.destroy();
});

function connect(url = server.url, replyTimeoutMs = 5_000): RespConnection {
  return new RespConnection({ url, name: 'writer:test:read0', logger, replyTimeoutMs });
}

const integer = async (connection: RespConnection, args: (string | number)[]) =>
  new RespCursor(await connection.send(encodeCommand(args))).integer('reply');

/** Connections Redis has open now (CLIENT LIST), this test's own ioredis client included. */
const openConnections = async () =>
  String(await redis.call('CLIENT', 'LIST'))
    .trim()
    .split('\n').length;

describe('RespConnection', () => {
  it('reads a reply of thousands of entries arriving in many chunks exactly as Redis stored them', async () => {
    const key = 'big';
    const pipeline = redis.pipeline();
    for (let i = 0; i < 5_000; i++) pipeline.xadd(key, '*', 'p', Buffer.from(`position-${i}-${'\r\n'.repeat(i % 7)}`));
    await pipeline.exec();
    await redis.xgroup('CREATE', key, 'processor', '0');
    const stored = (await redis.xrangeBuffer(key, '-', '+')) as [Buffer, Buffer[]][];

    const connection = connect();
    try {
      const reply = await connection.send(encodeCommand(['XREADGROUP', 'GROUP', 'processor', 'c1', 'COUNT', 10_000, 'STREAMS', key, '>']));
      expect(reply.length).toBeGreaterThan(200_000);
      const [batch] = parseStreamRead(reply) as [StreamEntries];
      expect(batch.length).toBe(5_000);
      for (let i = 0; i < batch.length; i++) {
        const [id, fields] = stored[i] as [Buffer, Buffer[]];
        expect(batch.id(i)).toBe(id.toString());
        expect(batch.reply.subarray(batch.positionStart(i), batch.positionEnd(i))).toEqual(fields[1]);
      }
    } finally {
      await connection.close();
    }
  });

  it('answers pipelined commands in order', async () => {
    const connection = connect();
    try {
      const replies = await Promise.all(Array.from({ length: 200 }, () => integer(connection, ['INCR', 'counter'])));
      expect(replies).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    } finally {
      await connection.close();
    }
  });

  it('authenticates with the user and password of the URL, selects its database and names itself', async () => {
    await redis.call('ACL', 'SETUSER', 'pitwall-writer', 'on', '>s3cret', '~*', '&*', '+@all');
    const connection = connect(`redis://pitwall-writer:s3cret@127.0.0.1:${server.port}/3`);
    try {
      expect(await integer(connection, ['XACK', 'none', 'processor', '1-0'])).toBe(0);
      await connection.send(encodeCommand(['SET', 'where', 'db3']));
      expect(await redis.get('where')).toBeNull();
      const db3 = server.client();
      await db3.select(3);
      expect(await db3.get('where')).toBe('db3');
      db3.disconnect();
      const clients = String(await redis.call('CLIENT', 'LIST'));
      expect(clients).toMatch(/name=writer:test:read0 .*db=3 .*user=pitwall-writer/);
      expect(connection.readinessProblem()).toBeUndefined();
    } finally {
      await connection.close();
    }
    // A refused password fails the command, and the socket it was tried on is closed, not leaked.
    const before = await openConnections();
    const wrong = connect(`redis://pitwall-writer:wrong@127.0.0.1:${server.port}`);
    await expect(wrong.send(encodeCommand(['PING']))).rejects.toThrow(/WRONGPASS/);
    for (let i = 0; i < 5; i++) await expect(wrong.send(encodeCommand(['PING']))).rejects.toBeInstanceOf(RedisReplyError);
    expect(wrong.readinessProblem()).toBe('redis down');
    await waitFor('failed connections closed', async () => (await openConnections()) === before, { timeoutMs: 5_000 });
    await wrong.close();
  });

  it('works for a user whose ACL forbids CLIENT SETNAME (the name is only for operators)', async () => {
    await redis.call('ACL', 'SETUSER', 'stream-only', 'on', '>s3cret', '~*', '&*', '+@all', '-client');
    const connection = connect(`redis://stream-only:s3cret@127.0.0.1:${server.port}`);
    try {
      expect((await connection.send(encodeCommand(['PING']))).toString()).toBe('+PONG\r\n');
      expect(connection.readinessProblem()).toBeUndefined();
      expect(String(await redis.call('CLIENT', 'LIST'))).toMatch(/name= .*user=stream-only/);
    } finally {
      await connection.close();
    }
  });

  it('lets a command pipelined behind a blocking read wait for it beyond its own reply timeout', async () => {
    const connection = connect(server.url, 300);
    try {
      await redis.xgroup('CREATE', 'blocked-behind', 'processor', '$', 'MKSTREAM');
      const read = connection.send(
        encodeCommand(['XREADGROUP', 'GROUP', 'processor', 'c1', 'BLOCK', 1_000, 'STREAMS', 'blocked-behind', '>']),
        1_000,
      );
      const ping = connection.send(encodeCommand(['PING']));
      expect(parseStreamRead(await read)).toEqual([]);
      expect((await ping).toString()).toBe('+PONG\r\n');
      expect(connection.readinessProblem()).toBeUndefined();
    } finally {
      await connection.close();
    }
  });

  it('fails a blocked read when Redis dies, fails while it is down, and reconnects by itself when it is back', async () => {
    const connection = connect();
    try {
      await redis.xgroup('CREATE', 'quiet', 'processor', '$', 'MKSTREAM');
      const blocked = connection.send(
        encodeCommand(['XREADGROUP', 'GROUP', 'processor', 'c1', 'BLOCK', 30_000, 'STREAMS', 'quiet', '>']),
        30_000,
      );
      const outcome = blocked.then(
        () => 'replied',
        (err: unknown) => err,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      await server.kill();
      const err = await outcome;
      expect(err).toBeInstanceOf(RedisConnectionError);
      expect(connection.readinessProblem()).toBe('redis down');
      await expect(connection.send(encodeCommand(['PING']))).rejects.toBeInstanceOf(RedisConnectionError);
      await server.restart();
      expect((await connection.send(encodeCommand(['PING']))).toString()).toBe('+PONG\r\n');
      expect(connection.readinessProblem()).toBeUndefined();
    } finally {
      await connection.close();
      redis.disconnect();
      redis = server.client();
    }
  });

  it('fails a command that gets no reply within its deadline (a half-open connection)', async () => {
    // Answers the connection's CLIENT SETNAME, then nothing more.
    const silent = net.createServer((socket) => socket.once('data', () => socket.write('+OK\r\n')));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const connection = connect(`redis://127.0.0.1:${port}`, 300);
    try {
      await expect(connection.send(encodeCommand(['PING']))).rejects.toThrow(/no reply from redis within 300 ms/);
      expect(connection.readinessProblem()).toBe('redis down');
    } finally {
      await connection.close();
      silent.close();
    }
  });

  it('fails what is in flight when closed, and every command after', async () => {
    const connection = connect();
    await redis.xgroup('CREATE', 'idle', 'processor', '$', 'MKSTREAM');
    await connection.send(encodeCommand(['PING']));
    const blocked = connection.send(
      encodeCommand(['XREADGROUP', 'GROUP', 'processor', 'c1', 'BLOCK', 30_000, 'STREAMS', 'idle', '>']),
      30_000,
    );
    await connection.close();
    await expect(blocked).rejects.toThrow(/closed/);
    await expect(connection.send(encodeCommand(['PING']))).rejects.toBeInstanceOf(RedisConnectionError);
    expect(connection.readinessProblem()).toBe('redis closed');
  });
});
