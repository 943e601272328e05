--[[
  One worker's heartbeat for one model: record that it is alive, what it holds of the model (its
  versions and their states, as JSON), prune workers whose heartbeat is older than prune_before (their
  announcement goes with them), and re-open the versions the worker serves as selected (so admission
  comes back after Redis restarted without its data).

  Input:
    KEYS[1] workers sorted set  (il:{m:<model>}:workers; consumer → last heartbeat, ms)
    KEYS[2] status hash         (il:{m:<model>}:status; consumer → announcement JSON)
    KEYS[3] admission hash      (il:{m:<model>}:admission; version → 'open' | 'closed')

    ARGV[1] now                 (ms since epoch)
    ARGV[2] consumer name
    ARGV[3] announcement JSON   ('' = the worker leaves: its entries are removed)
    ARGV[4] prune_before        (ms since epoch)
    ARGV[5..] versions to open

  Output: the number of workers pruned.
]]
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
for _, consumer in ipairs(stale) do
  redis.call('HDEL', KEYS[2], consumer)
end
if #stale > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
end
for i = 5, #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], 'open')
end
return #stale
