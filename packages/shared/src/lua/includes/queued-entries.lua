--[[
  queuedEntries: the entries of a version's request streams, waiting or in flight, over every priority
  level (max_queue_size counts them all; settled entries are deleted, so XLEN is exactly that).

    first, levels   KEYS[first .. first + levels - 1] are the level streams
]]
local function queuedEntries(first, levels)
  local queued = 0
  for i = first, first + levels - 1 do
    queued = queued + redis.call('XLEN', KEYS[i])
  end
  return queued
end
