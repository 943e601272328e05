--[[
  Mark the jobs of a batch as running, and tell the worker which ones to run. A job that is no longer
  queued or running (already settled by an earlier delivery, cancelled, or expired and gone) is
  reported so the worker acknowledges it without inference.

  Input:
    KEYS[1..n] job keys          (il:job:<id>), one per request of the batch

    ARGV[1] started_at           (ms since epoch)
    ARGV[2] events channel       (il:events)
    ARGV[3..n+2] job ids, in the order of KEYS

  Output:
    array of n statuses as they were before the call ('queued', 'running', a terminal status, or
    'missing')
]]
local result = {}
for i, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if not status then
    result[i] = 'missing'
  else
    result[i] = status
    if status == 'queued' then
      redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
      redis.call('PUBLISH', ARGV[2], ARGV[i + 2] .. '\trunning')
    end
  end
end
return result
