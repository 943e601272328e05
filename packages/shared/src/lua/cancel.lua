--[[
  Cancel a single job that is still queued: it becomes 'cancelled' (error code 'cancelled'), its stream
  entry is acknowledged and deleted (so it no longer counts against max_queue_size and no worker runs
  it; a worker that already read it finds it terminal in start.lua and drops it), its record expires
  result_ttl_s from now, and `<job id>\tcancelled` is announced so every waiter ends at once. The
  cancel releases the job (includes/release-job.lua): it no longer counts against its tenant's
  max_queued, and a job with a callback_url is put in the callbacks due set. A job that is running,
  terminal or gone is left as it is.

  Input:
    KEYS[1] job key             (il:{m:<model>}:job:<id>)
    KEYS[2] request stream      (il:{m:<model>}:v<version>:requests[:p<level>]; the job's, from its record)
    KEYS[3] tenant queued hash  (il:{m:<model>}:queued)
    KEYS[4] callbacks due set   (il:{m:<model>}:callbacks)

    ARGV[1] consumer group
    ARGV[2] finished_at         (ms since epoch)
    ARGV[3] result_ttl_s
    ARGV[4] events channel      (il:events)
    ARGV[5] job id
    ARGV[6] error message

  Output:
    the job's status before the call ('queued' = cancelled by this call, 'running', a terminal status),
    or 'missing'
]]
--- @include "release-job"
local fields = redis.call('HMGET', KEYS[1], 'status', 'entry')
local status = fields[1]
if not status then
  return 'missing'
end
if status ~= 'queued' then
  return status
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2], 'error_code', 'cancelled',
  'error_message', ARGV[6])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
releaseJob(KEYS[1], KEYS[3], KEYS[4], ARGV[5], ARGV[2])
if fields[2] then
  redis.pcall('XACK', KEYS[2], ARGV[1], fields[2]) -- no consumer group yet: nothing to acknowledge
  redis.call('XDEL', KEYS[2], fields[2])
end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\tcancelled')
return 'queued'
