--[[
  releaseJob: what every script that moves a job to a terminal state does once, in the same call (the
  job's first terminal write): the job no longer counts against its tenant's max_queued, and a job
  with a callback_url is put in its model's callbacks due set, from which the aggregator queues the
  delivery (so a callback is never lost with a process: it is recorded atomically with the result).

    jobKey      the job hash (fields tenant, callback_url as enqueue.lua wrote them)
    queuedKey   il:{m:<model>}:queued (tenant → requests waiting or running)
    dueKey      il:{m:<model>}:callbacks (sorted set: job id → ms it became due)
    jobId, now  the job id; ms since epoch
]]
local function releaseJob(jobKey, queuedKey, dueKey, jobId, now)
  local fields = redis.call('HMGET', jobKey, 'tenant', 'callback_url')
  if fields[1] and redis.call('HINCRBY', queuedKey, fields[1], -1) <= 0 then
    redis.call('HDEL', queuedKey, fields[1])
  end
  if fields[2] then
    redis.call('ZADD', dueKey, now, jobId)
  end
end
