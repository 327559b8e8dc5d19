-- cancel_job.lua: cancel a job wherever it is. A waiting, delayed or dead job is removed
-- and never delivered; a job in flight is flagged and its holder learns it at the next
-- heartbeat (the flag also stops a retry or redelivery).
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] jobs   KEYS[4] meta   KEYS[5] leases
-- KEYS[6] delayed     KEYS[7] dead          KEYS[8] cancelled set         KEYS[9] errors
-- ARGV[1] job id
-- Returns 1 removed; 2 flagged (in flight); 0 no such job.

local id = ARGV[1]
if redis.call('HEXISTS', KEYS[3], id) == 0 then
  return 0
end
if redis.call('ZSCORE', KEYS[5], id) then
  redis.call('SADD', KEYS[8], id)
  return 2
end
local _, lane = read_meta(KEYS[4], id)
local delayed = redis.call('ZREM', KEYS[6], id)
local dead = redis.call('ZREM', KEYS[7], id)
if delayed == 0 and dead == 0 then
  if lane then
    redis.call('LREM', lane_key(lane), 1, id)
  else
    if redis.call('LREM', KEYS[2], 1, id) == 0 then
      redis.call('LREM', KEYS[1], 1, id)
    end
  end
end
forget(KEYS[3], KEYS[4], id, {{kind = 'h', key = KEYS[9]}})
return 1
