--[[
  publishEvents: announce the job events of one script call with one PUBLISH (a PUBLISH per job made
  Redis fan each one out to every gateway, and each gateway parse it, one message at a time).

    channel   the events channel (il:events)
    events    array of single-event messages (`<job id>\t<status>[\t<detail>]`)

  Nothing is published for no events; one event is published as it is; more go as one batch message:
    '*' then, per event, `<byte length of the event>:<event>`
  (a job id never starts with '*'; the lengths make any byte of a detail safe: an error message may
  hold tabs or newlines). The gateway's JobEvents reads both forms.
]]
local function publishEvents(channel, events)
  local count = #events
  if count == 0 then return end
  if count == 1 then
    redis.call('PUBLISH', channel, events[1])
    return
  end
  local parts = { '*' }
  for i = 1, count do
    local event = events[i]
    parts[#parts + 1] = #event .. ':'
    parts[#parts + 1] = event
  end
  redis.call('PUBLISH', channel, table.concat(parts))
end
