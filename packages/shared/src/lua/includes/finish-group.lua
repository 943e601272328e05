--[[
  finishGroup: move a group to a terminal status. Drops its member results, errors and kept inputs,
  takes it out of the ready set, lets its record expire result_ttl_s from now, and announces
  `<group id>\t<status>` on the events channel. The caller sets output or error fields first.

    groupKey, resultsKey, errorsKey, inputsKey   the group's keys (il:{m:<shard>}:group*:<id>)
    readyKey                                      il:{m:<shard>}:groups:ready
    status                                        'succeeded' | 'failed' | 'cancelled'
    finishedAt                                    ms since epoch
    channel, groupId                              events channel and the group id
    queuedKey                                     il:{m:<model>}:queued of the group's model
    dueKey                                        il:{m:<shard>}:groups:callbacks

  Members not settled yet (`remaining`) stop counting against the group's tenant's max_queued; a
  group with a callback_url is put in the callbacks due set (the aggregator queues the delivery).
]]
local function finishGroup(groupKey, resultsKey, errorsKey, inputsKey, readyKey, status, finishedAt, channel, groupId, queuedKey, dueKey)
  local owner = redis.call('HMGET', groupKey, 'tenant', 'remaining', 'callback_url')
  local left = tonumber(owner[2] or '0')
  if owner[1] and left > 0 and redis.call('HINCRBY', queuedKey, owner[1], -left) <= 0 then
    redis.call('HDEL', queuedKey, owner[1])
  end
  if owner[3] then redis.call('ZADD', dueKey, finishedAt, groupId) end
  redis.call('HSET', groupKey, 'status', status, 'finished_at', finishedAt)
  redis.call('UNLINK', resultsKey, errorsKey, inputsKey)
  redis.call('ZREM', readyKey, groupId)
  local ttl = tonumber(redis.call('HGET', groupKey, 'result_ttl_s'))
  if ttl then redis.call('EXPIRE', groupKey, ttl) end
  redis.call('PUBLISH', channel, groupId .. '\t' .. status)
end
