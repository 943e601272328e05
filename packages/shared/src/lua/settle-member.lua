--[[
  Settle one group member: record its result in the group once (see includes/settle-group-member.lua),
  then acknowledge and delete its stream entry. Idempotent: a redelivered member writes and counts
  nothing.

  One Redis Cluster slot: the group id is `<shard>~<nanoid>` and its shard is the group's model, so
  every key below carries the same tag ({m:<shard>} = {m:<model>}, keys.ts).

  Input:
    KEYS[1] group hash          (il:{m:<shard>}:group:<id>)
    KEYS[2] group results hash  (il:{m:<shard>}:group-results:<id>)
    KEYS[3] group errors hash   (il:{m:<shard>}:group-errors:<id>)
    KEYS[4] group inputs hash   (il:{m:<shard>}:group-inputs:<id>)
    KEYS[5] ready set           (il:{m:<shard>}:groups:ready)
    KEYS[6] request stream      (il:{m:<model>}:v<version>:requests)
    KEYS[7] tenant queued hash  (il:{m:<model>}:queued)
    KEYS[8] callbacks due set   (il:{m:<shard>}:groups:callbacks)

    ARGV[1]  consumer group
    ARGV[2]  stream entry id
    ARGV[3]  member index
    ARGV[4]  status             ('succeeded' | 'failed')
    ARGV[5]  output             (MessagePack bytes, '' when failed)
    ARGV[6]  error code         ('' when succeeded)
    ARGV[7]  error message      ('' when succeeded)
    ARGV[8]  now                (ms since epoch)
    ARGV[9]  events channel     (il:events)
    ARGV[10] group id

  Output:
    0 = nothing written, 1 = written, 2 = written and the group is ready for its reduce (the caller adds
    the reduce job), 3 = written and the group failed (on_item_error 'fail')
]]
--- @include "settle-group-member"
local outcome = settleGroupMember(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], ARGV[8], ARGV[9], ARGV[10], KEYS[7], KEYS[8])
redis.call('XACK', KEYS[6], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[6], ARGV[2])
return outcome
