--[[
  Cancel a group that is not terminal: it becomes 'cancelled' (error code 'cancelled'), its member
  results are dropped, and the members still queued are acknowledged without inference when a worker
  reads them (start-members.lua). A reduce in progress finds it cancelled and writes nothing.

  One Redis Cluster slot: the group id is `<shard>~<nanoid>` and its shard is the group's model, so
  every key below carries the same tag ({m:<shard>} = {m:<model>}, keys.ts).

  Input:
    KEYS[1] group hash          (il:{m:<shard>}:group:<id>)
    KEYS[2] group results hash  (il:{m:<shard>}:group-results:<id>)
    KEYS[3] group errors hash   (il:{m:<shard>}:group-errors:<id>)
    KEYS[4] group inputs hash   (il:{m:<shard>}:group-inputs:<id>)
    KEYS[5] ready set           (il:{m:<shard>}:groups:ready)
    KEYS[6] tenant queued hash  (il:{m:<model>}:queued of the group's model)
    KEYS[7] callbacks due set   (il:{m:<shard>}:groups:callbacks)

    ARGV[1] now                 (ms since epoch)
    ARGV[2] events channel
    ARGV[3] group id
    ARGV[4] error message

  Output:
    1 = cancelled, 0 = already terminal, -1 = no such group
]]
--- @include "finish-group"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return -1
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return 0
end
redis.call('HSET', KEYS[1], 'error_code', 'cancelled', 'error_message', ARGV[4])
finishGroup(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], 'cancelled', ARGV[1], ARGV[2], ARGV[3], KEYS[6], KEYS[7])
return 1
