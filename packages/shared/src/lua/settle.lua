--[[
  Settle the single jobs of one batch: write each result unless the job is already terminal, announce
  each new status, then acknowledge and delete every entry. Idempotent: a redelivered request never
  writes twice. One call per batch (every key is in the model's slot).

  Input:
    KEYS[1]      request stream      (il:{m:<model>}:v<version>:requests)
    KEYS[2..n+1] job keys            (il:{m:<model>}:job:<id>), one per request
    KEYS[n+2]    tenant queued hash  (il:{m:<model>}:queued)
    KEYS[n+3]    callbacks due set   (il:{m:<model>}:callbacks)

    ARGV[1] consumer group
    ARGV[2] finished_at              (ms since epoch)
    ARGV[3] inference_ms             (of the whole batch)
    ARGV[4] batch_size
    ARGV[5] batch_id
    ARGV[6] result_ttl_s             (seconds each record lives from now)
    ARGV[7] events channel           (il:events)
    ARGV[8] the events of every request, built by the caller as this script announces them (see
                                     below): each result is read from it, and it is published as it
                                     is when this call writes every result, the common case (building
                                     the message in Lua cost Redis more than the rest of the call)
    then 8 values per request, in the order of KEYS[2..]:
      job id, stream entry id, status ('succeeded' | 'failed'),
      queue_ms,
      load_ms                        (how long it waited for its version to load; '' when it did not),
      the first byte of its event, the first byte of its value and the last byte of both in ARGV[8]
      (1-based, inclusive; the last is before the value's first when the value is empty); the value is
      the output (JSON text) when succeeded, `<code>\t<message>` when failed

  Each result written is announced on the events channel with what it wrote, so a waiting gateway
  answers without reading the record back:
    <job id>\t<status>\t<queue_ms>\t<load_ms>\t<inference_ms>\t<batch_size>\t<batch_id>\t<output or code\tmessage>
  all of one call in one PUBLISH (includes/event-batch.lua: one event as it is, more as a batch message).

  Output:
    array of n: 1 when this call wrote that result, 0 when the job was already terminal or missing
  Each result written also releases the job (includes/release-job.lua: tenant count, callback due).
]]
--- @include "release-job"
--- @include "event-batch"
local n = #KEYS - 3
local written = {}
local entryIds = {}
local count = 0
-- As the caller wrote it (an integer): a Lua number would be formatted back into a string per EXPIRE.
local ttl = ARGV[6]
for i = 2, n + 1 do
  local at = 9 + (i - 2) * 8
  local jobId, entryId, status, queueMs, loadMs = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  entryIds[i - 1] = entryId
  written[i - 1] = 0
  -- One read for the status and what releasing the job needs.
  local fields = redis.call('HMGET', KEYS[i], 'status', 'tenant', 'callback_url')
  local current = fields[1]
  if current == 'queued' or current == 'running' then
    local value = string.sub(ARGV[8], tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7]))
    local record = { 'status', status, 'finished_at', ARGV[2], 'queue_ms', queueMs,
      'inference_ms', ARGV[3], 'batch_size', ARGV[4], 'batch_id', ARGV[5] }
    if status == 'succeeded' then
      record[#record + 1] = 'output'
      record[#record + 1] = value
    else
      local tab = string.find(value, '\t', 1, true) or (#value + 1)
      record[#record + 1] = 'error_code'
      record[#record + 1] = string.sub(value, 1, tab - 1)
      record[#record + 1] = 'error_message'
      record[#record + 1] = string.sub(value, tab + 1)
    end
    if loadMs ~= '' then
      record[#record + 1] = 'load_ms'
      record[#record + 1] = loadMs
    end
    redis.call('HSET', KEYS[i], unpack(record))
    redis.call('EXPIRE', KEYS[i], ttl)
    releaseJobFields(KEYS[n + 2], KEYS[n + 3], jobId, ARGV[2], fields[2], fields[3])
    written[i - 1] = 1
    count = count + 1
  end
end
if count == n then
  redis.call('PUBLISH', ARGV[7], ARGV[8])
else
  local events = {}
  for i = 1, n do
    if written[i] == 1 then
      local at = 9 + (i - 1) * 8
      events[#events + 1] = string.sub(ARGV[8], tonumber(ARGV[at + 5]), tonumber(ARGV[at + 7]))
    end
  end
  publishEvents(ARGV[7], events)
end
if #entryIds > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(entryIds))
  redis.call('XDEL', KEYS[1], unpack(entryIds))
end
return written
