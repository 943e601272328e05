--[[
  Write the outcome of a group's reduce, only if the group is still 'reducing' (a cancel, or an earlier
  run of the same reduce, wins): the output (or the error), then finish the group
  (includes/finish-group.lua: member results dropped, record expires result_ttl_s from now, event).

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

    ARGV[1] status              ('succeeded' | 'failed')
    ARGV[2] output              (MessagePack bytes, '' when failed)
    ARGV[3] failed_indexes      (MessagePack array of the members left out, '' when none)
    ARGV[4] error code          ('' when succeeded)
    ARGV[5] error message       ('' when succeeded)
    ARGV[6] now                 (ms since epoch)
    ARGV[7] events channel
    ARGV[8] group id

  Output:
    1 = written, 0 = the group was no longer reducing (nothing written)
]]
--- @include "finish-group"
if redis.call('HGET', KEYS[1], 'status') ~= 'reducing' then
  return 0
end
if ARGV[1] == 'succeeded' then
  redis.call('HSET', KEYS[1], 'output', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'error_code', ARGV[4], 'error_message', ARGV[5])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'failed_indexes', ARGV[3])
end
finishGroup(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[6], ARGV[7], ARGV[8], KEYS[6], KEYS[7])
return 1
