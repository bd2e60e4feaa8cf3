import { describe, expect, it } from 'vitest';
import {
  encodeAck,
  encodeCommand,
  encodeGroupRead,
  parseAutoClaim,
  parseStreamRead,
  RedisReplyError,
  ReplyScanner,
  RespCursor,
  type StreamEntries,
} from '@pitwall/streams';

// The services' own RESP2 reading: replies are written here byte for byte as the protocol
// specification gives them (https://redis.io/docs/latest/develop/reference/protocol-spec/), so the
// parser is checked against the format, not against itself.

type Reply = null | number | string | Buffer | Reply[] | { error: string };

/** A reply in RESP2 bytes: strings and Buffers as bulk strings, null as nil array, numbers as integers. */
function resp(reply: Reply): Buffer {
  if (reply === null) return Buffer.from('*-1\r\n');
  if (typeof reply === 'number') return Buffer.from(`:${reply}\r\n`);
  if (typeof reply === 'string' || Buffer.isBuffer(reply)) {
    const bytes = Buffer.isBuffer(reply) ? reply : Buffer.from(reply);
    return Buffer.concat([Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n')]);
  }
  if (Array.isArray(reply)) return Buffer.concat([Buffer.from(`*${reply.length}\r\n`), ...reply.map(resp)]);
  return Buffer.from(`-${reply.error}\r\n`);
}

const position = (n: number) => Buffer.from([0x0a, 0x0f, ...Buffer.from(`35209308000${String(n).padStart(4, '0')}`), 0x10, n]);

/** An XREADGROUP reply over two shards; shard b has an entry deleted from the stream (nil fields). */
function readReply(): Reply {
  return [
    [
      'positions:0',
      [
        ['1700000000000-0', ['p', position(1)]],
        ['1700000000000-1', ['trace', 'x'.repeat(300), 'p', position(2)]],
        ['1700000000001-0', ['other', 'value']],
      ],
    ],
    [
      'positions:1',
      [
        ['1700000000002-0', null],
        ['1700000000003-12', ['p', Buffer.from([0xff, 0x0d, 0x0a, 0x00])]],
      ],
    ],
  ];
}

function positionOf(batch: StreamEntries, i: number): Buffer | undefined {
  const start = batch.positionStart(i);
  return start < 0 ? undefined : batch.reply.subarray(start, batch.positionEnd(i));
}

describe('ReplyScanner', () => {
  it('finds the end of a reply however its bytes are split, and not before', () => {
    const bytes = resp(readReply());
    for (let split = 1; split < bytes.length; split++) {
      const scanner = new ReplyScanner();
      const buf = Buffer.alloc(bytes.length);
      bytes.copy(buf, 0, 0, split);
      expect(scanner.scan(buf, split)).toBe(-1);
      bytes.copy(buf, split, split);
      expect(scanner.scan(buf, bytes.length)).toBe(bytes.length);
    }
  });

  it('stops at the end of the first of several pipelined replies, then goes on after a reset', () => {
    const first = resp([['k', [['1-0', ['p', 'v']]]]]);
    const second = resp(3);
    const third = resp({ error: 'NOGROUP No such key' });
    const buf = Buffer.concat([first, second, third]);
    const scanner = new ReplyScanner();
    expect(scanner.scan(buf, buf.length)).toBe(first.length);
    scanner.reset();
    const rest = buf.subarray(first.length);
    expect(scanner.scan(rest, rest.length)).toBe(second.length);
    scanner.reset();
    expect(scanner.scan(rest.subarray(second.length), third.length)).toBe(third.length);
  });

  it('takes nil and empty arrays and nil bulk strings as complete elements', () => {
    for (const bytes of [resp(null), resp([]), Buffer.from('$-1\r\n'), resp([[], null, ''])]) {
      expect(new ReplyScanner().scan(bytes, bytes.length)).toBe(bytes.length);
    }
  });

  it('rejects bytes that are not RESP', () => {
    const notResp = Buffer.from('HTTP/1.1 400\r\n');
    expect(() => new ReplyScanner().scan(notResp, notResp.length)).toThrow(RedisReplyError);
    const bareCr = Buffer.from('$3\rabc\r\n');
    expect(() => new ReplyScanner().scan(bareCr, bareCr.length)).toThrow(/CR without LF/);
    const badLength = Buffer.from('$3x\r\nabc\r\n');
    expect(() => new ReplyScanner().scan(badLength, badLength.length)).toThrow(/malformed RESP integer/);
  });
});

describe('parseStreamRead', () => {
  it('locates every entry, its id and its Position in place, per shard', () => {
    const batches = parseStreamRead(resp(readReply()));
    expect(batches.map((b) => [b.key, b.length])).toEqual([
      ['positions:0', 3],
      ['positions:1', 2],
    ]);
    const [a, b] = batches as [StreamEntries, StreamEntries];
    expect([a.id(0), a.id(1), a.id(2), a.lastId()]).toEqual(['1700000000000-0', '1700000000000-1', '1700000000001-0', '1700000000001-0']);
    expect(positionOf(a, 0)).toEqual(position(1));
    expect(positionOf(a, 1)).toEqual(position(2));
    expect(positionOf(a, 2)).toBeUndefined();
    expect(a.fields(1).map((f) => f.toString())).toEqual(['trace', 'x'.repeat(300), 'p', position(2).toString()]);
    expect(a.entry(2)).toEqual({ id: '1700000000001-0', fields: [Buffer.from('other'), Buffer.from('value')] });
    expect([b.exists(0), b.exists(1)]).toEqual([false, true]);
    expect(b.entry(0)).toEqual({ id: '1700000000002-0', fields: [] });
    expect(positionOf(b, 1)).toEqual(Buffer.from([0xff, 0x0d, 0x0a, 0x00]));
    expect(b.lastId()).toBe('1700000000003-12');
  });

  it('reads a stream key as the UTF-8 it was sent as, so XACK names the same key', () => {
    const [batch] = parseStreamRead(resp([['posições:0', [['5-0', ['p', 'v']]]]])) as [StreamEntries];
    expect(batch.key).toBe('posições:0');
    expect(encodeAck(batch.key, 'processor', [batch])).toEqual(encodeCommand(['XACK', 'posições:0', 'processor', '5-0']));
  });

  it('returns nothing for a timed-out read (nil) and leaves out shards without entries', () => {
    expect(parseStreamRead(resp(null))).toEqual([]);
    expect(parseStreamRead(resp([['positions:0', []]]))).toEqual([]);
  });

  it('throws the error of an error reply, and RedisReplyError for a reply of the wrong shape', () => {
    expect(() => parseStreamRead(resp({ error: 'NOGROUP No such key or consumer group' }))).toThrow(/^NOGROUP No such key/);
    expect(() => parseStreamRead(resp([['positions:0']]))).toThrow(RedisReplyError);
    expect(() => parseStreamRead(resp([['positions:0', [['1-0']]]]))).toThrow(/not \[id, fields\]/);
    expect(() => parseStreamRead(resp(7))).toThrow(/not a list/);
    expect(() => parseStreamRead(resp([['positions:0', [['1-0', ['p', 'v']]]]]).subarray(0, 30))).toThrow(/truncated/);
  });
});

describe('parseAutoClaim', () => {
  it('returns the cursor, the claimed entries and the ids gone from the stream (Redis 7)', () => {
    const reply = resp(['1700000000005-0', [['1700000000001-0', ['p', position(3)]]], ['1700000000000-0', '1700000000000-1']]);
    const { next, entries, deleted } = parseAutoClaim(reply, 'positions:3');
    expect(next).toBe('1700000000005-0');
    expect([entries.key, entries.length, entries.id(0)]).toEqual(['positions:3', 1, '1700000000001-0']);
    expect(positionOf(entries, 0)).toEqual(position(3));
    expect(deleted).toEqual(['1700000000000-0', '1700000000000-1']);
  });

  it('skips the nil entries Redis 6.2 returned for deleted ids', () => {
    const reply = resp([
      '0-0',
      [
        ['1-0', null],
        ['2-0', ['p', position(4)]],
        ['3-0', null],
      ],
    ]);
    const { entries, deleted } = parseAutoClaim(reply, 'k');
    expect(entries.length).toBe(1);
    expect(entries.id(0)).toBe('2-0');
    expect(positionOf(entries, 0)).toEqual(position(4));
    expect(deleted).toEqual([]);
  });
});

describe('commands', () => {
  it('encodes a command as an array of bulk strings', () => {
    expect(encodeCommand(['XREADGROUP', 'COUNT', 5000, Buffer.from([0, 0xff])]).toString('latin1')).toBe(
      '*4\r\n$10\r\nXREADGROUP\r\n$5\r\nCOUNT\r\n$4\r\n5000\r\n$2\r\n\u0000\u00ff\r\n',
    );
  });

  it('builds XACK from the ids of several reads byte for byte as encodeCommand would', () => {
    const ids = Array.from({ length: 120 }, (_, i) => `${1_700_000_000_000 + i}-${i % 13}`);
    const longId = `${'9'.repeat(20)}-${'9'.repeat(20)}`;
    const first = parseStreamRead(resp([['s', ids.slice(0, 70).map((id) => [id, ['p', 'v']])]]))[0] as StreamEntries;
    const second = parseStreamRead(resp([['s', [...ids.slice(70).map((id) => [id, ['p', 'v']]), [longId, null]]]]))[0] as StreamEntries;
    expect(encodeAck('s', 'processor', [first, second])).toEqual(encodeCommand(['XACK', 's', 'processor', ...ids, longId]));
  });

  it('builds a group read: a blocking NOACK read of new entries, a read of the pending ones without BLOCK', () => {
    const blocking = encodeGroupRead({ key: 's:{0}', group: 'g', consumer: 'c', count: 100, blockMs: 500, noAck: true });
    expect(blocking.toString('latin1')).toBe(
      '*12\r\n$10\r\nXREADGROUP\r\n$5\r\nGROUP\r\n$1\r\ng\r\n$1\r\nc\r\n$5\r\nCOUNT\r\n$3\r\n100\r\n' +
        '$5\r\nBLOCK\r\n$3\r\n500\r\n$5\r\nNOACK\r\n$7\r\nSTREAMS\r\n$5\r\ns:{0}\r\n$1\r\n>\r\n',
    );
    expect(encodeGroupRead({ key: 's', group: 'g', consumer: 'c', count: 7, after: '0' })).toEqual(
      encodeCommand(['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', 7, 'STREAMS', 's', '0']),
    );
  });

  it('reads integers and simple strings with the cursor', () => {
    expect(new RespCursor(resp(42)).integer('n')).toBe(42);
    expect(new RespCursor(Buffer.from(':-3\r\n')).integer('n')).toBe(-3);
    expect(() => new RespCursor(Buffer.from('+OK\r\n')).integer('n')).toThrow(/n is not a number/);
  });
});

describe('the traceparent a sampled position carries (field tp)', () => {
  it('is read from field tp wherever it is, and undefined for entries without it', () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const [batch] = parseStreamRead(
      resp([
        [
          'positions:0',
          [
            ['1-0', ['p', position(1), 'tp', traceparent]],
            ['1-1', ['p', position(2)]],
            ['1-2', ['tp', traceparent, 'p', position(3)]],
          ],
        ],
      ]),
    ) as [StreamEntries];
    expect(batch.traceparent(0)).toBe(traceparent);
    expect(batch.traceparent(1)).toBeUndefined();
    expect(batch.traceparent(2)).toBe(traceparent);
    // Field p is found beside it as before.
    expect(positionOf(batch, 0)).toEqual(position(1));
    expect(positionOf(batch, 2)).toEqual(position(3));
  });
});
