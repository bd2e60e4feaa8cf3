import { shardKeys } from '@pitwall/contract';
import { createLogger } from '@pitwall/platform';
import { encodeCommand, encodeGroupRead, parseStreamRead, redisErrorKind, RespConnection } from '@pitwall/streams';
import type { RawReaderMessage, RawReaderReply } from './protocol.js';

// The baseline of the gateway-floor suite, in a process of its own: the least a pod can do with the
// stream. Per shard a blocking XREADGROUP ... NOACK in a group of its own (created at $ before it says
// ready), with the gateway's COUNT and BLOCK, on a RESP connection of its own; each reply's entries
// are located in place (parseStreamRead), counted and dropped: nothing decoded, cached or routed.
// IPC: `count` answers how many entries it read; `close` ends it.

function need(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is required`);
  return value;
}

const url = need('BENCH_REDIS_URL');
const keys = shardKeys(need('BENCH_STREAM_KEY'), Number(need('BENCH_SHARDS')));
const count = Number(need('BENCH_READ_COUNT'));
const blockMs = Number(need('BENCH_READ_BLOCK_MS'));
const group = 'bench-floor-raw';
const logger = createLogger('bench-floor-raw', 'warn');
const connections = keys.map(
  (_, shard) => new RespConnection({ url, name: `bench-floor-raw:read${shard}`, logger, replyTimeoutMs: 10_000 }),
);
let read = 0;
let stopping = false;

function send(reply: RawReaderReply): void {
  process.send?.(reply);
}

async function readLoop(shard: number): Promise<void> {
  const connection = connections[shard] as RespConnection;
  const command = encodeGroupRead({ key: keys[shard] as string, group, consumer: 'raw', count, blockMs, noAck: true });
  while (!stopping) {
    const reply = await connection.send(command, blockMs).catch(() => undefined);
    if (reply === undefined) continue;
    for (const batch of parseStreamRead(reply)) read += batch.length;
  }
}

process.on('message', (message: RawReaderMessage) => {
  if (message.cmd === 'count') send({ ok: 'count', read });
  else {
    stopping = true;
    void Promise.all(connections.map((c) => c.close())).then(() => process.exit(0));
  }
});

for (const [shard, key] of keys.entries()) {
  await (connections[shard] as RespConnection)
    .send(encodeCommand(['XGROUP', 'CREATE', key, group, '$', 'MKSTREAM']))
    .catch((err: unknown) => {
      if (redisErrorKind(err) !== 'busygroup') throw err;
    });
}
for (const shard of keys.keys()) void readLoop(shard);
send({ ok: 'ready' });
