--[[
  copyToDeadLetter: append a copy of one request stream entry to the dead-letter stream, with its
  source entry id and delivery count added (fields `source_entry`, `deliveries`). Nothing when the
  entry is gone.

    streamKey, deadKey   the request stream and its dead-letter stream
    entryId              the entry to copy
    deliveries           its delivery count (from the pending entries list)
]]
local function copyToDeadLetter(streamKey, deadKey, entryId, deliveries)
  local entries = redis.call('XRANGE', streamKey, entryId, entryId)
  if #entries > 0 then
    local fields = entries[1][2]
    table.insert(fields, 'source_entry')
    table.insert(fields, entryId)
    table.insert(fields, 'deliveries')
    table.insert(fields, deliveries)
    redis.call('XADD', deadKey, '*', unpack(fields))
  end
end
