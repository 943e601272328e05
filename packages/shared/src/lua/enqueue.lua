--[[
  Admit the requests of one call to one model version, all or nothing: create each job record and
  append each request to the version's request stream, unless the stream would then hold more than
  max_queue_size entries, the version is not open for admission, or one of the job ids exists
  already (then nothing is written).

  Every key is in the model's slot (a job id carries its model's hash tag), so one call may admit a
  whole bulk request.

  Input:
    KEYS[1]      request stream   (il:{m:<model>}:v<version>:requests)
    KEYS[2]      admission hash   (il:{m:<model>}:admission; field <version> must be 'open')
    KEYS[3..n+2] job keys         (il:{m:<model>}:job:<id>), one per request
    KEYS[n+3]    tenant queued hash (il:{m:<model>}:queued; tenant → its requests waiting or running)
    KEYS[n+4]    idempotency key  (il:{m:<model>}:idem:jobs:<hash>; not touched when ARGV[2n+8] is '')
    KEYS[n+5..n+L+4] every priority level's stream of the version (L of them, KEYS[1] among them):
                 max_queue_size counts the entries of all levels

    ARGV[1] max_queue_size        (entries waiting or in flight)
    ARGV[2] model name
    ARGV[3] version
    ARGV[4] created_at            (ms since epoch)
    ARGV[5..n+4]  job ids         (in the order of KEYS[3..])
    ARGV[n+5..2n+4] inputs        (MessagePack bytes, in the same order; stored once, in the stream entry)
    ARGV[2n+5] tenant             ('' = none: nothing counted)
    ARGV[2n+6] max_queued         (the tenant's cap in this model's queue; 0 = none)
    ARGV[2n+7] callback_url       ('' = none; a job with one is put in the callbacks due set when it
                                  reaches a terminal state)
    ARGV[2n+8] idempotency fingerprint (SHA-256 of the request; '' = no Idempotency-Key)
    ARGV[2n+9] idempotency ttl_s
    ARGV[2n+10] deadline_at       (ms since epoch, '' = none: start.lua reports a job still queued after
                                  it, and the worker settles it failed deadline_exceeded without inference)
    ARGV[2n+11] priority          (the level of KEYS[1], 1 = highest)
    ARGV[2n+12] L                 (number of level streams at the end of KEYS)

  Output:
    the n stream entry ids, in order, or
    -1 when the stream cannot take n more entries (queue_full)
    -2 when a job id already exists
    -3 when the version is not open (no worker opened it, or one closed it to unload it)
    -4 when the tenant would have more than max_queued requests in this model's queue
    -5 when the idempotency key was used with another fingerprint
    {'idempotent', '<id>\n<id>...'} when it was used with this fingerprint: the jobs it created then
]]
--- @include "queued-entries"
local levels = tonumber(ARGV[#ARGV])
local deadlineAt = ARGV[#ARGV - 2]
local priority = ARGV[#ARGV - 1]
local n = #KEYS - 4 - levels
local tenant, maxQueued, callbackUrl, fingerprint = ARGV[2 * n + 5], tonumber(ARGV[2 * n + 6]), ARGV[2 * n + 7], ARGV[2 * n + 8]
local queuedKey, idemKey = KEYS[n + 3], KEYS[n + 4]
if fingerprint ~= '' then
  local stored = redis.call('HMGET', idemKey, 'fingerprint', 'ids')
  if stored[1] then
    if stored[1] ~= fingerprint then return -5 end
    return { 'idempotent', stored[2] }
  end
end
if redis.call('HGET', KEYS[2], ARGV[3]) ~= 'open' then
  return -3
end
if queuedEntries(n + 5, levels) + n > tonumber(ARGV[1]) then
  return -1
end
for i = 3, n + 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return -2
  end
end
if tenant ~= '' and maxQueued > 0 and tonumber(redis.call('HGET', queuedKey, tenant) or '0') + n > maxQueued then
  return -4
end
local entryIds = {}
for i = 1, n do
  local id = ARGV[4 + i]
  local entryId = redis.call('XADD', KEYS[1], '*', 'job', id, 'input', ARGV[4 + n + i])
  redis.call('HSET', KEYS[2 + i], 'id', id, 'model', ARGV[2], 'version', ARGV[3], 'status', 'queued',
    'created_at', ARGV[4], 'entry', entryId, 'priority', priority)
  if deadlineAt ~= '' then redis.call('HSET', KEYS[2 + i], 'deadline_at', deadlineAt) end
  entryIds[i] = entryId
  if tenant ~= '' then redis.call('HSET', KEYS[2 + i], 'tenant', tenant) end
  if callbackUrl ~= '' then redis.call('HSET', KEYS[2 + i], 'callback_url', callbackUrl) end
end
if tenant ~= '' then redis.call('HINCRBY', queuedKey, tenant, n) end
if fingerprint ~= '' then
  redis.call('HSET', idemKey, 'fingerprint', fingerprint, 'ids', table.concat(ARGV, '\n', 5, 4 + n))
  redis.call('EXPIRE', idemKey, tonumber(ARGV[2 * n + 9]))
end
return entryIds
