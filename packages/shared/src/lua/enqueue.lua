--[[
  Admit one request: create its job record and append it to the model version's request stream,
  atomically, unless the stream already holds max_queue_size entries.

  Input:
    KEYS[1] job key             (il:job:<id>)
    KEYS[2] request stream      (il:{m:<model>}:v<version>:requests)

    ARGV[1] job id
    ARGV[2] max_queue_size      (entries waiting or in flight)
    ARGV[3] model name
    ARGV[4] version
    ARGV[5] input               (MessagePack bytes; stored once, in the stream entry)
    ARGV[6] created_at          (ms since epoch)

  Output:
    the stream entry id, or
    -1 when the stream is full (queue_full)
    -2 when the job id already exists
]]
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -2
end
local entryId = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1], 'input', ARGV[5])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'model', ARGV[3], 'version', ARGV[4],
  'status', 'queued', 'created_at', ARGV[6], 'entry', entryId)
return entryId
