import { createHash } from 'node:crypto';

// The admission script: one call per shard per packet decides, atomically inside Redis, whether the
// packet's records become durable. Redis runs a script alone, so no other ingestion process or pod
// can append between the backlog read and the appends: the `processor` group's backlog never exceeds
// the cap, and nothing is ever trimmed from the shard here (the writer trims below what the group has
// acknowledged). Records not admitted go to the shard's live-only stream, trimmed freely, and the
// caller does not acknowledge them: the device keeps them and resends.
//
// KEYS[1] shard stream, KEYS[2] its live-only stream (same hash tag: one slot).
// ARGV[1] cap (STREAM_MAXLEN), ARGV[2] live-only MAXLEN (approximate), ARGV[3] consumer group,
// ARGV[4] position field, ARGV[5] trace field, ARGV[6] traceparent ('' when not sampled),
// ARGV[7..] one encoded Position per record.
// Reply: {1, backlog before, id...} when admitted; {0, backlog} when not (records went live-only).
//
// Backlog = lag + pending of the group (XINFO GROUPS, O(groups)). When the group is missing or its
// lag is unknown (nil: entries were deleted inside the unread range), the whole stream length counts
// instead: never less than the real backlog, so the estimate can only refuse too early.
export const ADMISSION_SCRIPT = `
local shard = KEYS[1]
local cap = tonumber(ARGV[1])
local n = #ARGV - 6
local backlog = nil
local groups = redis.pcall('XINFO', 'GROUPS', shard)
if type(groups) == 'table' and groups.err ~= nil then
  if string.find(groups.err, 'no such key', 1, true) == nil then return redis.error_reply(groups.err) end
  backlog = 0
else
  for _, g in ipairs(groups) do
    local name, lag, pending
    for i = 1, #g, 2 do
      local f = g[i]
      if f == 'name' then name = g[i + 1] elseif f == 'lag' then lag = g[i + 1] elseif f == 'pending' then pending = g[i + 1] end
    end
    if name == ARGV[3] then
      if type(lag) == 'number' and type(pending) == 'number' then backlog = lag + pending end
      break
    end
  end
  if backlog == nil then backlog = redis.call('XLEN', shard) end
end
local tp = ARGV[6]
if backlog + n <= cap then
  local reply = {1, backlog}
  for i = 7, #ARGV do
    if tp == '' then
      reply[#reply + 1] = redis.call('XADD', shard, '*', ARGV[4], ARGV[i])
    else
      reply[#reply + 1] = redis.call('XADD', shard, '*', ARGV[4], ARGV[i], ARGV[5], tp)
    end
  end
  return reply
end
for i = 7, #ARGV do
  if tp == '' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[4], ARGV[i])
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[4], ARGV[i], ARGV[5], tp)
  end
end
return {0, backlog}
`;

/** SHA1 of the script: what EVALSHA names it by. */
export const ADMISSION_SCRIPT_SHA = createHash('sha1').update(ADMISSION_SCRIPT).digest('hex');
