--[[
  Create a group, append inputs to it, close it, or any of these at once, atomically: each input
  becomes one request on the model version's stream, tagged with the group id and its index (fields
  `group`, `index`, `input`), so members batch together with single jobs. Nothing is stored unless all
  of the call's inputs fit in the stream (max_queue_size).

  Group record fields (KEYS[1]): id, model, version, reduce, output_name, on_item_error, result_ttl_s,
  keep_inputs, status ('open' | 'queued' | 'reducing' | terminal), size (inputs added), remaining
  (members not yet settled), completed, failed, created_at, closed_at, ready_at, finished_at, and at
  the end output, failed_indexes or error_code + error_message; reduce_runs (aggregator).

  One Redis Cluster slot: the group id is `<shard>~<nanoid>` and its shard is the group's model, so
  every key below carries the same tag ({m:<shard>} = {m:<model>}, keys.ts).

  Input:
    KEYS[1] group hash          (il:{m:<shard>}:group:<id>)
    KEYS[2] request stream      (il:{m:<model>}:v<version>:requests)
    KEYS[3] group inputs hash   (il:{m:<shard>}:group-inputs:<id>; written when keep_inputs is 1)
    KEYS[4] ready set           (il:{m:<shard>}:groups:ready)
    KEYS[5] open set            (il:{m:<shard>}:groups:open; an open group's score is the time of its last call)
    KEYS[6] admission hash      (il:{m:<model>}:admission; inputs are taken only while field <version> is 'open')
    KEYS[7] tenant queued hash  (il:{m:<model>}:queued; tenant → its requests waiting or running)
    KEYS[8] idempotency key     (il:{m:<model>}:idem:groups:<hash>; not touched when the fingerprint is '')
    KEYS[9..] every priority level's stream of the version (KEYS[2] among them): max_queue_size counts
                                all levels

    ARGV[1]  group id
    ARGV[2]  create             ('1': create the group, which must not exist; '0': it must exist and be open)
    ARGV[3]  close              ('1': close it after appending)
    ARGV[4]  expected start     (the index of this call's first input, or '-1' for no check)
    ARGV[5]  max_queue_size     (entries waiting or in flight)
    ARGV[6]  keep_inputs        ('1': also keep each input in KEYS[3])
    ARGV[7]  now                (ms since epoch)
    ARGV[8]  events channel     (il:events)
    ARGV[9..14] on create: model, version, reduce, output_name, on_item_error, result_ttl_s
    ARGV[15] version            (the stream's, checked against KEYS[6])
    ARGV[16] on create: deadline_at (ms since epoch, '' = none; members still queued after it fail with
                                deadline_exceeded, see start-members.lua)
    ARGV[17] on create: priority (the level of KEYS[2], 1 = highest)
    ARGV[18..c+17] inputs       (MessagePack bytes, in index order; c inputs)
    ARGV[c+18] tenant           ('' = none; on create stored in the record, and its members counted)
    ARGV[c+19] max_queued       (the tenant's cap in this model's queue; 0 = none)
    ARGV[c+20] callback_url     (on create; '' = none)
    ARGV[c+21] idempotency fingerprint (on create; '' = no Idempotency-Key)
    ARGV[c+22] idempotency ttl_s

  Output:
    {code, size, status, ready}: code 0 = done, -1 = the stream is full (queue_full), -2 = expected
    start differs from size (index_conflict), -3 = no such group, -4 = the group is not open, -5 = the
    group already exists, -6 = the version is not open (closed to unload it); size and status as after the call; ready 1 when the close found every member
    settled (the caller adds the reduce job); -7 = the tenant would have more than max_queued requests
    in the model's queue; -8 = the idempotency key was used with this fingerprint (status = the group
    id it created); -9 = it was used with another fingerprint.
]]
--- @include "mark-group-ready"
local groupId = ARGV[1]
local count = #ARGV - 22
local tenant, maxQueued, callbackUrl, fingerprint = ARGV[count + 18], tonumber(ARGV[count + 19]), ARGV[count + 20], ARGV[count + 21]
local size = 0
if ARGV[2] == '1' and fingerprint ~= '' then
  local stored = redis.call('HMGET', KEYS[8], 'fingerprint', 'ids')
  if stored[1] then
    if stored[1] ~= fingerprint then return {-9, 0, '', 0} end
    return {-8, 0, stored[2], 0}
  end
end
if ARGV[2] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {-5, 0, '', 0}
  end
else
  local fields = redis.call('HMGET', KEYS[1], 'status', 'size')
  if not fields[1] then
    return {-3, 0, '', 0}
  end
  size = tonumber(fields[2])
  if fields[1] ~= 'open' then
    return {-4, size, fields[1], 0}
  end
end
if ARGV[4] ~= '-1' and tonumber(ARGV[4]) ~= size then
  return {-2, size, 'open', 0}
end
if count > 0 and redis.call('HGET', KEYS[6], ARGV[15]) ~= 'open' then
  return {-6, size, 'open', 0}
end
if count > 0 then
  local queued = 0
  for i = 9, #KEYS do
    queued = queued + redis.call('XLEN', KEYS[i])
  end
  if queued + count > tonumber(ARGV[5]) then
    return {-1, size, 'open', 0}
  end
end
if count > 0 and tenant ~= '' and maxQueued > 0 and tonumber(redis.call('HGET', KEYS[7], tenant) or '0') + count > maxQueued then
  return {-7, size, 'open', 0}
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'id', groupId, 'model', ARGV[9], 'version', ARGV[10], 'reduce', ARGV[11],
    'output_name', ARGV[12], 'on_item_error', ARGV[13], 'result_ttl_s', ARGV[14], 'keep_inputs', ARGV[6],
    'status', 'open', 'size', 0, 'remaining', 0, 'completed', 0, 'failed', 0, 'created_at', ARGV[7],
    'priority', ARGV[17])
  if ARGV[16] ~= '' then redis.call('HSET', KEYS[1], 'deadline_at', ARGV[16]) end
  if tenant ~= '' then redis.call('HSET', KEYS[1], 'tenant', tenant) end
  if callbackUrl ~= '' then redis.call('HSET', KEYS[1], 'callback_url', callbackUrl) end
  if fingerprint ~= '' then
    redis.call('HSET', KEYS[8], 'fingerprint', fingerprint, 'ids', groupId)
    redis.call('EXPIRE', KEYS[8], tonumber(ARGV[count + 22]))
  end
end
if count > 0 and tenant ~= '' then redis.call('HINCRBY', KEYS[7], tenant, count) end
for i = 1, count do
  local index = size + i - 1
  redis.call('XADD', KEYS[2], '*', 'group', groupId, 'index', index, 'input', ARGV[17 + i])
  if ARGV[6] == '1' then
    redis.call('HSET', KEYS[3], index, ARGV[17 + i])
  end
end
if count > 0 then
  redis.call('HINCRBY', KEYS[1], 'size', count)
  redis.call('HINCRBY', KEYS[1], 'remaining', count)
end
local status = 'open'
local ready = 0
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[5], groupId)
  status = 'queued'
  redis.call('HSET', KEYS[1], 'status', 'queued', 'closed_at', ARGV[7])
  ready = markGroupReady(KEYS[1], KEYS[4], ARGV[7], ARGV[8], groupId)
  if ready == 1 then
    status = 'reducing'
  end
end
if status == 'open' then
  redis.call('ZADD', KEYS[5], ARGV[7], groupId)
end
return {0, size + count, status, ready}
