--[[
  Settle one request: write its result unless the job is already terminal, then acknowledge and delete
  its stream entry and announce the new status. Idempotent: a redelivered request never writes twice.

  Input:
    KEYS[1] job key             (il:job:<id>)
    KEYS[2] request stream      (il:{m:<model>}:v<version>:requests)

    ARGV[1]  consumer group
    ARGV[2]  stream entry id
    ARGV[3]  status             ('succeeded' | 'failed')
    ARGV[4]  output             (MessagePack bytes, '' when failed)
    ARGV[5]  error code         ('' when succeeded)
    ARGV[6]  error message      ('' when succeeded)
    ARGV[7]  finished_at        (ms since epoch)
    ARGV[8]  queue_ms
    ARGV[9]  inference_ms
    ARGV[10] batch_size
    ARGV[11] batch_id
    ARGV[12] result_ttl_s       (seconds the record lives from now)
    ARGV[13] events channel     (il:events)
    ARGV[14] job id

  Output:
    1 when this call wrote the result, 0 when the job was already terminal or missing
]]
local written = 0
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', ARGV[7], 'queue_ms', ARGV[8],
    'inference_ms', ARGV[9], 'batch_size', ARGV[10], 'batch_id', ARGV[11])
  if ARGV[3] == 'succeeded' then
    redis.call('HSET', KEYS[1], 'output', ARGV[4])
  else
    redis.call('HSET', KEYS[1], 'error_code', ARGV[5], 'error_message', ARGV[6])
  end
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[12]))
  redis.call('PUBLISH', ARGV[13], ARGV[14] .. '\t' .. ARGV[3])
  written = 1
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return written
