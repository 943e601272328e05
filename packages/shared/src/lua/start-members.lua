--[[
  Tell the worker which members of one group, read in a batch, to run. A member is dropped (acknowledged
  without inference) when its group is gone, terminal (failed, cancelled) or already reducing, or when
  its index already has a result or an error (a redelivery of a member that was settled). A member of a
  group whose deadline (`deadline_at`, from its `timeout_ms`) is not after now is reported so the worker
  settles it failed with 'deadline_exceeded', without inference.

  One Redis Cluster slot: the group id is `<shard>~<nanoid>` and its shard is the group's model, so
  every key below carries the same tag ({m:<shard>} = {m:<model>}, keys.ts).

  Input:
    KEYS[1] group hash          (il:{m:<shard>}:group:<id>)
    KEYS[2] group results hash  (il:{m:<shard>}:group-results:<id>)
    KEYS[3] group errors hash   (il:{m:<shard>}:group-errors:<id>)

    ARGV[1] now                 (ms since epoch)
    ARGV[2..n+1] member indexes

  Output:
    array of n: 1 = run it, 0 = drop it, 2 = settle it failed with deadline_exceeded
]]
local result = {}
local fields = redis.call('HMGET', KEYS[1], 'status', 'deadline_at')
local status = fields[1]
local live = status == 'open' or status == 'queued'
local expired = fields[2] and tonumber(fields[2]) <= tonumber(ARGV[1])
for i = 2, #ARGV do
  local index = ARGV[i]
  if live and redis.call('HEXISTS', KEYS[2], index) == 0 and redis.call('HEXISTS', KEYS[3], index) == 0 then
    result[i - 1] = expired and 2 or 1
  else
    result[i - 1] = 0
  end
end
return result
