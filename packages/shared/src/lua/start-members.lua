--[[
  Tell the worker which members of one group, read in a batch, to run. A member is dropped (acknowledged
  without inference) when its group is gone, terminal (failed, cancelled) or already reducing, or when
  its index already has a result or an error (a redelivery of a member that was settled).

  Input:
    KEYS[1] group hash          (il:{g:<id>}:group)
    KEYS[2] group results hash  (il:{g:<id>}:results)
    KEYS[3] group errors hash   (il:{g:<id>}:errors)

    ARGV[1..n] member indexes

  Output:
    array of n: 1 = run it, 0 = drop it
]]
local result = {}
local status = redis.call('HGET', KEYS[1], 'status')
local live = status == 'open' or status == 'queued'
for i, index in ipairs(ARGV) do
  if live and redis.call('HEXISTS', KEYS[2], index) == 0 and redis.call('HEXISTS', KEYS[3], index) == 0 then
    result[i] = 1
  else
    result[i] = 0
  end
end
return result
