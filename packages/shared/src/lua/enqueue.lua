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

    ARGV[1] max_queue_size        (entries waiting or in flight)
    ARGV[2] model name
    ARGV[3] version
    ARGV[4] created_at            (ms since epoch)
    ARGV[5..n+4]  job ids         (in the order of KEYS[3..])
    ARGV[n+5..2n+4] inputs        (MessagePack bytes, in the same order; stored once, in the stream entry)

  Output:
    the n stream entry ids, in order, or
    -1 when the stream cannot take n more entries (queue_full)
    -2 when a job id already exists
    -3 when the version is not open (no worker opened it, or one closed it to unload it)
]]
local n = #KEYS - 2
if redis.call('HGET', KEYS[2], ARGV[3]) ~= 'open' then
  return -3
end
if redis.call('XLEN', KEYS[1]) + n > tonumber(ARGV[1]) then
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
    'created_at', ARGV[4], 'entry', entryId)
  entryIds[i] = entryId
end
return entryIds
