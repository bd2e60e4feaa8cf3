import { PROCESSOR_GROUP } from '@pitwall/contract';
import { encodeCommand, RespCursor, type RespConnection } from '@pitwall/streams';

/**
 * Trims one shard below the oldest entry group `processor` has not acknowledged, keeping a retained
 * tail, atomically (one script: nothing is delivered, acknowledged or appended in between):
 *
 * - the bound starts at now (Redis TIME) - retention, as an entry id `<ms>-0`;
 * - it moves down to the oldest pending entry of the group (XPENDING: delivered, not acknowledged),
 * - and to the first entry after the group's last-delivered-id (the first undelivered one);
 * - XTRIM MINID <bound> removes only entries with a smaller id: each is delivered and acknowledged.
 *
 * No stream or no group `processor`: nothing is trimmed. KEYS[1] shard; ARGV[1] group, ARGV[2]
 * retention (ms). Returns the entries removed. One key: cluster-safe.
 */
const TRIM_SCRIPT = `
local key, group, retention = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', key) == 0 then return 0 end
local last
for _, info in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local name, delivered
  for i = 1, #info, 2 do
    if info[i] == 'name' then name = info[i + 1] elseif info[i] == 'last-delivered-id' then delivered = info[i + 1] end
  end
  if name == group then last = delivered end
end
if last == nil then return 0 end
local function parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function below(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am < bm or (am == bm and as < bs)
end
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - retention
if cutoff <= 0 then return 0 end
local bound = string.format('%.0f-0', cutoff)
local pending = redis.call('XPENDING', key, group)
if pending[1] > 0 and below(pending[2], bound) then bound = pending[2] end
local undelivered = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
if #undelivered > 0 and below(undelivered[1][1], bound) then bound = undelivered[1][1] end
return redis.call('XTRIM', key, 'MINID', bound)
`;

/**
 * The writer trims the shard streams (ingestion appends without MAXLEN): every shard, below what
 * group `processor` has not acknowledged, keeping the last WRITER_STREAM_RETENTION_MS of entries for
 * the gateways' warm-up and resumes. On the writer's own RESP connections: `connection` is one, or
 * gives the shard's (in a Redis Cluster, to the node that serves it).
 */
export class StreamTrimmer {
  private readonly connectionOf: (key: string) => RespConnection;

  constructor(
    connection: RespConnection | ((key: string) => RespConnection),
    readonly options: { keys: readonly string[]; retentionMs: number },
  ) {
    this.connectionOf = typeof connection === 'function' ? connection : () => connection;
  }

  /** Trims one shard; returns how many entries it removed. */
  async trim(key: string): Promise<number> {
    const reply = await this.connectionOf(key).send(
      encodeCommand(['EVAL', TRIM_SCRIPT, 1, key, PROCESSOR_GROUP, this.options.retentionMs]),
    );
    return new RespCursor(reply).integer('XTRIM reply');
  }
}
