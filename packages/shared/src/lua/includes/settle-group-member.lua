--[[
  settleGroupMember: record one member's result in its group, once. A member whose group is gone,
  terminal or already reducing, or whose index already has a result or an error (a redelivery), writes
  nothing. Otherwise: a success stores its output under its index and counts `completed`; a failure
  stores `<code>\t<message>` and counts `failed`, and under on_item_error 'fail' fails the group at
  once (code 'member_failed'); then `remaining` is decremented, and the member that brings it to 0 in
  a closed group marks the group ready.

    groupKey, resultsKey, errorsKey, inputsKey, readyKey   the group's keys and il:{m:<shard>}:groups:ready
    index                                                  the member's index (string)
    status                                                 'succeeded' | 'failed'
    output                                                 MessagePack bytes ('' when failed)
    code, message                                          the member's error ('' when succeeded)
    now                                                    ms since epoch
    channel, groupId                                       events channel and the group id
    queuedKey, dueKey                                      as finishGroup's (the written member stops counting for its tenant)

  Returns 0 = nothing written, 1 = written, 2 = written and the group is ready for its reduce,
  3 = written and the group failed.
]]
--- @include "finish-group"
--- @include "mark-group-ready"
local function settleGroupMember(groupKey, resultsKey, errorsKey, inputsKey, readyKey, index, status, output, code,
                                 message, now, channel, groupId, queuedKey, dueKey)
  local groupStatus = redis.call('HGET', groupKey, 'status')
  if groupStatus ~= 'open' and groupStatus ~= 'queued' then
    return 0
  end
  if redis.call('HEXISTS', resultsKey, index) == 1 or redis.call('HEXISTS', errorsKey, index) == 1 then
    return 0
  end
  local tenant = redis.call('HGET', groupKey, 'tenant')
  if tenant and redis.call('HINCRBY', queuedKey, tenant, -1) <= 0 then
    redis.call('HDEL', queuedKey, tenant)
  end
  if status == 'succeeded' then
    redis.call('HSET', resultsKey, index, output)
    redis.call('HINCRBY', groupKey, 'completed', 1)
  else
    redis.call('HSET', errorsKey, index, code .. '\t' .. message)
    redis.call('HINCRBY', groupKey, 'failed', 1)
    if redis.call('HGET', groupKey, 'on_item_error') == 'fail' then
      redis.call('HINCRBY', groupKey, 'remaining', -1)
      redis.call('HSET', groupKey, 'error_code', 'member_failed',
        'error_message', 'input ' .. index .. ' failed (' .. code .. '): ' .. message)
      finishGroup(groupKey, resultsKey, errorsKey, inputsKey, readyKey, 'failed', now, channel, groupId, queuedKey, dueKey)
      return 3
    end
  end
  redis.call('HINCRBY', groupKey, 'remaining', -1)
  if markGroupReady(groupKey, readyKey, now, channel, groupId) == 1 then
    return 2
  end
  return 1
end
