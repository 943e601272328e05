--[[
  finishGroup: move a group to a terminal status. Drops its member results, errors and kept inputs,
  takes it out of the ready set, lets its record expire result_ttl_s from now, and announces
  `<group id>\t<status>` on the events channel. The caller sets output or error fields first.

    groupKey, resultsKey, errorsKey, inputsKey   the group's keys (il:{g:<id>}:...)
    readyKey                                      il:groups:ready
    status                                        'succeeded' | 'failed' | 'cancelled'
    finishedAt                                    ms since epoch
    channel, groupId                              events channel and the group id
]]
local function finishGroup(groupKey, resultsKey, errorsKey, inputsKey, readyKey, status, finishedAt, channel, groupId)
  redis.call('HSET', groupKey, 'status', status, 'finished_at', finishedAt)
  redis.call('UNLINK', resultsKey, errorsKey, inputsKey)
  redis.call('ZREM', readyKey, groupId)
  local ttl = tonumber(redis.call('HGET', groupKey, 'result_ttl_s'))
  if ttl then redis.call('EXPIRE', groupKey, ttl) end
  redis.call('PUBLISH', channel, groupId .. '\t' .. status)
end
