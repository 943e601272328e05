--[[
  Mark the jobs of a batch as running, and tell the worker which ones to run. A job that is no longer
  queued or running (already settled by an earlier delivery, cancelled, or expired and gone) is
  reported so the worker acknowledges it without inference. A queued job whose deadline (`deadline_at`,
  written by enqueue.lua from `timeout_ms`) is not after started_at is not marked running either: it is
  reported as 'deadline_exceeded', and the worker settles it failed with that code, without inference.

  Input:
    KEYS[1..n] job keys          (il:job:<id>), one per request of the batch

    ARGV[1] started_at           (ms since epoch)
    ARGV[2] events channel       (il:events)
    ARGV[3..n+2] job ids, in the order of KEYS

  The jobs marked running are announced with one PUBLISH for the call: `<job id>\trunning` for one,
  a batch message (includes/event-batch.lua) for more.

  Output:
    array of n statuses as they were before the call ('queued', 'running', a terminal status, or
    'missing'), or 'deadline_exceeded' for a queued job past its deadline
]]
--- @include "event-batch"
local result = {}
local events = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, 'status', 'deadline_at')
  local status = fields[1]
  if not status then
    result[i] = 'missing'
  elseif status == 'queued' and fields[2] and tonumber(fields[2]) <= tonumber(ARGV[1]) then
    result[i] = 'deadline_exceeded'
  else
    result[i] = status
    if status == 'queued' then
      redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
      events[#events + 1] = ARGV[i + 2] .. '\trunning'
    end
  end
end
publishEvents(ARGV[2], events)
return result
