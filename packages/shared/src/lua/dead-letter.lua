--[[
  Move a request delivered more than max_deliveries times to the dead-letter stream, fail its job with
  code 'poison' (unless already terminal), and acknowledge + delete the original entry.

  Input:
    KEYS[1] job key             (il:job:<id>)
    KEYS[2] request stream      (il:{m:<model>}:v<version>:requests)
    KEYS[3] dead-letter stream  (il:{m:<model>}:v<version>:dead)
    KEYS[4] tenant queued hash  (il:{m:<model>}:queued)
    KEYS[5] callbacks due set   (il:{m:<model>}:callbacks)

    ARGV[1] consumer group
    ARGV[2] stream entry id
    ARGV[3] deliveries          (count seen in the pending entries list)
    ARGV[4] finished_at         (ms since epoch)
    ARGV[5] result_ttl_s
    ARGV[6] events channel
    ARGV[7] job id
    ARGV[8] error message

  Output:
    1 when the job was failed by this call, 0 otherwise (a failure written releases the job:
    includes/release-job.lua)
]]
--- @include "copy-to-dead-letter"
--- @include "release-job"
copyToDeadLetter(KEYS[2], KEYS[3], ARGV[2], ARGV[3])
local written = 0
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[4], 'error_code', 'poison',
    'error_message', ARGV[8])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
  releaseJob(KEYS[1], KEYS[4], KEYS[5], ARGV[7], ARGV[4])
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. '\tfailed')
  written = 1
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return written
