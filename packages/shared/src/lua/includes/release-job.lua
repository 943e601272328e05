--[[
  releaseJob: what every script that moves a job to a terminal state does once, in the same call (the
  job's first terminal write): the job no longer counts against its tenant's max_queued, and a job
  with a callback_url is put in its model's callbacks due set, from which the aggregator queues the
  delivery (so a callback is never lost with a process: it is recorded atomically with the result).

    jobKey      the job hash (fields tenant, callback_url as enqueue.lua wrote them)
    queuedKey   il:{m:<model>}:queued (tenant → requests waiting or running)
    dueKey      il:{m:<model>}:callbacks (sorted set: job id → ms it became due)
    jobId, now  the job id; ms since epoch

  releaseJobFields is the same for a caller that already read the job's `tenant` and `callback_url`
  (false when absent, as HMGET answers them), sparing the read.
]]
local function releaseJobFields(queuedKey, dueKey, jobId, now, tenant, callbackUrl)
  if tenant and redis.call('HINCRBY', queuedKey, tenant, -1) <= 0 then
    redis.call('HDEL', queuedKey, tenant)
  end
  if callbackUrl then
    redis.call('ZADD', dueKey, now, jobId)
  end
end

local function releaseJob(jobKey, queuedKey, dueKey, jobId, now)
  local fields = redis.call('HMGET', jobKey, 'tenant', 'callback_url')
  releaseJobFields(queuedKey, dueKey, jobId, now, fields[1], fields[2])
end
