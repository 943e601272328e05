--[[
  Admit several single requests to one model version, each on its own (unlike enqueue.lua, which
  admits a call all or nothing): the one-request client calls that reached the gateway while an
  earlier one for the same model shard was in flight, sent as one call (protocol/job-scripts.ts). In order, each request gets its job record and its stream
  entry, or is refused alone: when the version's streams already hold max_queue_size entries, when its
  tenant already has max_queued requests in this model's queue, or when its job id exists. When the
  version is not open for admission, every request is refused.

  Every key is in the model's (partition's) slot: a job id carries its shard's hash tag.

  Input:
    KEYS[1]      request stream   (il:{m:<model>}:v<version>:requests of the requests' priority level)
    KEYS[2]      admission hash   (il:{m:<model>}:admission; field <version> must be 'open')
    KEYS[3..n+2] job keys         (il:{m:<model>}:job:<id>), one per request
    KEYS[n+3]    tenant queued hash (il:{m:<model>}:queued; tenant → its requests waiting or running)
    KEYS[n+4..n+L+3] every priority level's stream of the version (L of them, KEYS[1] among them):
                 max_queue_size counts the entries of all levels

    ARGV[1] max_queue_size        (entries waiting or in flight)
    ARGV[2] model name
    ARGV[3] version
    ARGV[4] tenant                ('' = none: nothing counted)
    ARGV[5] max_queued            (the tenant's cap in this model's queue; 0 = none)
    ARGV[6] callback_url          ('' = none; see enqueue.lua)
    ARGV[7] priority              (the level of KEYS[1], 1 = highest)
    ARGV[8] L                     (number of level streams at the end of KEYS)
    then 4 values per request, in the order of KEYS[3..]:
      job id, input (MessagePack bytes), created_at (ms since epoch),
      deadline_at (ms since epoch, '' = none; see enqueue.lua)

  Output:
    -3 when the version is not open (no request stored), else an array of n, per request:
    its stream entry id, or
    -1 when the streams were full (queue_full),
    -2 when its job id already exists,
    -4 when its tenant was at max_queued (tenant_queue_full)
]]
--- @include "queued-entries"
local levels = tonumber(ARGV[8])
local n = #KEYS - 3 - levels
if redis.call('HGET', KEYS[2], ARGV[3]) ~= 'open' then
  return -3
end
local room = tonumber(ARGV[1]) - queuedEntries(n + 4, levels)
local tenant, maxQueued, callbackUrl, priority = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local queuedKey = KEYS[n + 3]
local tenantRoom = room
if tenant ~= '' and maxQueued > 0 then
  tenantRoom = maxQueued - tonumber(redis.call('HGET', queuedKey, tenant) or '0')
end
local result = {}
local admitted = 0
for i = 1, n do
  local at = 9 + (i - 1) * 4
  local id, jobKey = ARGV[at], KEYS[2 + i]
  if admitted >= room then
    result[i] = -1
  elseif admitted >= tenantRoom then
    result[i] = -4
  elseif redis.call('EXISTS', jobKey) == 1 then
    result[i] = -2
  else
    local entryId = redis.call('XADD', KEYS[1], '*', 'job', id, 'input', ARGV[at + 1])
    local record = { 'id', id, 'model', ARGV[2], 'version', ARGV[3], 'status', 'queued', 'created_at', ARGV[at + 2], 'entry', entryId, 'priority', priority }
    if ARGV[at + 3] ~= '' then
      record[#record + 1] = 'deadline_at'
      record[#record + 1] = ARGV[at + 3]
    end
    if tenant ~= '' then
      record[#record + 1] = 'tenant'
      record[#record + 1] = tenant
    end
    if callbackUrl ~= '' then
      record[#record + 1] = 'callback_url'
      record[#record + 1] = callbackUrl
    end
    redis.call('HSET', jobKey, unpack(record))
    admitted = admitted + 1
    result[i] = entryId
  end
end
if tenant ~= '' and admitted > 0 then redis.call('HINCRBY', queuedKey, tenant, admitted) end
return result
