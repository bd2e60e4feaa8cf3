import { createHash } from 'node:crypto';

// The admission script: one call per shard per event-loop turn decides, atomically inside Redis,
// which of the turn's packets become durable. Redis runs a script alone, so no other ingestion process
// or pod can append between the backlog read and the appends: the `processor` group's backlog never
// exceeds the cap, and nothing is ever trimmed from the shard here (the writer trims below what the
// group has acknowledged). Each packet is admitted whole or not at all, in order: a packet that does
// not fit goes to the shard's live-only stream (trimmed freely) and its caller does not acknowledge
// it (the device keeps its records and resends), while a later, smaller packet of the same call may
// still fit.
//
// KEYS[1] shard stream, KEYS[2] its live-only stream (same hash tag: one slot).
// ARGV[1] cap (STREAM_MAXLEN), ARGV[2] live-only MAXLEN (approximate), ARGV[3] consumer group,
// ARGV[4] position field, ARGV[5] trace field, then per packet: its record count n, '1' when it goes
// live-only whatever the backlog (backpressure engaged) else '0', its traceparent ('' when not
// sampled), and its n encoded Positions.
// Reply: per packet {1 admitted or 0 live-only, backlog before it}, then the ids of every admitted
// record, packet after packet.
//
// Backlog = lag + pending of the group (XINFO GROUPS, O(groups), read once per call), plus what the
// call admitted before the packet. When the group is missing or its lag is unknown (nil: entries were
// deleted inside the unread range), the whole stream length counts instead: never less than the real
// backlog, so the estimate can only refuse too early.
export const ADMISSION_SCRIPT = `
local shard = KEYS[1]
local cap = tonumber(ARGV[1])
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
local reply = {}
local ids = {}
local at = 6
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  local tp = ARGV[at + 2]
  local first, last = at + 3, at + 2 + n
  if ARGV[at + 1] == '0' and backlog + n <= cap then
    reply[#reply + 1] = 1
    reply[#reply + 1] = backlog
    for i = first, last do
      if tp == '' then
        ids[#ids + 1] = redis.call('XADD', shard, '*', ARGV[4], ARGV[i])
      else
        ids[#ids + 1] = redis.call('XADD', shard, '*', ARGV[4], ARGV[i], ARGV[5], tp)
      end
    end
    backlog = backlog + n
  else
    reply[#reply + 1] = 0
    reply[#reply + 1] = backlog
    for i = first, last do
      if tp == '' then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[4], ARGV[i])
      else
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[4], ARGV[i], ARGV[5], tp)
      end
    end
  end
  at = last + 1
end
for _, id in ipairs(ids) do reply[#reply + 1] = id end
return reply
`;

/** SHA1 of the script: what EVALSHA names it by. */
export const ADMISSION_SCRIPT_SHA = createHash('sha1').update(ADMISSION_SCRIPT).digest('hex');
