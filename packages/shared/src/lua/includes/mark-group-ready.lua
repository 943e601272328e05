--[[
  markGroupReady: when a group is closed ('queued') and none of its members is left to settle, move it
  to 'reducing', add it to the ready set (scored by now) and announce `<group id>\treducing`. The caller
  then adds its reduce job. Returns 1 when it did, 0 otherwise.

    groupKey, readyKey   the group hash and il:{m:<shard>}:groups:ready
    now                  ms since epoch
    channel, groupId     events channel and the group id
]]
local function markGroupReady(groupKey, readyKey, now, channel, groupId)
  local fields = redis.call('HMGET', groupKey, 'status', 'remaining')
  if fields[1] ~= 'queued' or tonumber(fields[2]) ~= 0 then
    return 0
  end
  redis.call('HSET', groupKey, 'status', 'reducing', 'ready_at', now)
  redis.call('ZADD', readyKey, now, groupId)
  redis.call('PUBLISH', channel, groupId .. '\treducing')
  return 1
end
