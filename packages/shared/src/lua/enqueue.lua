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
    KEYS[n+3..n+L+2] every priority level's stream of the version (L of them, KEYS[1] among them):
                 max_queue_size counts the entries of all levels

    ARGV[1] max_queue_size        (entries waiting or in flight)
    ARGV[2] model name
    ARGV[3] version
    ARGV[4] created_at            (ms since epoch)
    ARGV[5..n+4]  job ids         (in the order of KEYS[3..])
    ARGV[n+5..2n+4] inputs        (MessagePack bytes, in the same order; stored once, in the stream entry)
    ARGV[#ARGV-2] deadline_at     (ms since epoch, '' = none: start.lua fails a job still queued after it
                                  with deadline_exceeded, without inference)
    ARGV[#ARGV-1] priority        (the level of KEYS[1], 1 = highest)
    ARGV[#ARGV]   L               (number of level streams at the end of KEYS)

  Output:
    the n stream entry ids, in order, or
    -1 when the stream cannot take n more entries (queue_full)
    -2 when a job id already exists
    -3 when the version is not open (no worker opened it, or one closed it to unload it)
]]
local levels = tonumber(ARGV[#ARGV])
local deadlineAt = ARGV[#ARGV - 2]
local priority = ARGV[#ARGV - 1]
local n = #KEYS - 2 - levels
if redis.call('HGET', KEYS[2], ARGV[3]) ~= 'open' then
  return -3
end
local queued = 0
for i = n + 3, n + 2 + levels do
  queued = queued + redis.call('XLEN', KEYS[i])
end
if queued + n > tonumber(ARGV[1]) then
  return -1
end
for i = 3, n + 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return -2
  end
end
local entryIds = {}
for i = 1, n do
  local id = ARGV[4 + i]
  local entryId = redis.call('XADD', KEYS[1], '*', 'job', id, 'input', ARGV[4 + n + i])
  redis.call('HSET', KEYS[2 + i], 'id', id, 'model', ARGV[2], 'version', ARGV[3], 'status', 'queued',
    'created_at', ARGV[4], 'entry', entryId, 'priority', priority)
  if deadlineAt ~= '' then redis.call('HSET', KEYS[2 + i], 'deadline_at', deadlineAt) end
  entryIds[i] = entryId
end
return entryIds
