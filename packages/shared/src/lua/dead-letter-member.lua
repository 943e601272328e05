--[[
  Move a group member delivered more than max_deliveries times to the dead-letter stream, settle it as
  failed with code 'poison' (see includes/settle-group-member.lua), and acknowledge + delete the
  original entry.

  One Redis Cluster slot: the group id is `<shard>~<nanoid>` and its shard is the group's model, so
  every key below carries the same tag ({m:<shard>} = {m:<model>}, keys.ts).

  Input:
    KEYS[1] group hash          (il:{m:<shard>}:group:<id>)
    KEYS[2] group results hash  (il:{m:<shard>}:group-results:<id>)
    KEYS[3] group errors hash   (il:{m:<shard>}:group-errors:<id>)
    KEYS[4] group inputs hash   (il:{m:<shard>}:group-inputs:<id>)
    KEYS[5] ready set           (il:{m:<shard>}:groups:ready)
    KEYS[6] request stream      (il:{m:<model>}:v<version>:requests)
    KEYS[7] dead-letter stream  (il:{m:<model>}:v<version>:dead)
    KEYS[8] tenant queued hash  (il:{m:<model>}:queued)
    KEYS[9] callbacks due set   (il:{m:<shard>}:groups:callbacks)

    ARGV[1] consumer group
    ARGV[2] stream entry id
    ARGV[3] deliveries          (count seen in the pending entries list)
    ARGV[4] member index
    ARGV[5] now                 (ms since epoch)
    ARGV[6] events channel
    ARGV[7] group id
    ARGV[8] error message

  Output:
    as settle-member.lua
]]
--- @include "copy-to-dead-letter"
--- @include "settle-group-member"
copyToDeadLetter(KEYS[6], KEYS[7], ARGV[2], ARGV[3])
local outcome = settleGroupMember(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[4], 'failed', '', 'poison',
  ARGV[8], ARGV[5], ARGV[6], ARGV[7], KEYS[8], KEYS[9])
redis.call('XACK', KEYS[6], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[6], ARGV[2])
return outcome
