-- cancel_job.lua: cancel a job wherever it is. A waiting, delayed or dead job is removed
-- and never delivered; a job in flight is flagged and its holder learns it at the next
-- heartbeat (the flag also stops a retry or redelivery).
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] leases   KEYS[9] delayed   KEYS[10] dead
-- KEYS[11] cancelled set   KEYS[12] errors   KEYS[13] finish:high   KEYS[14] finish:normal
-- ARGV[1] job id
-- Returns 1 removed; 2 flagged (in flight); 0 no such job.

local id = ARGV[1]
local envelope = redis.call('HGET', KEYS[6], id)
if not envelope then
  return 0
end
if redis.call('ZSCORE', KEYS[8], id) then
  redis.call('SADD', KEYS[11], id)
  return 2
end
local delayed = redis.call('ZREM', KEYS[9], id)
local dead = redis.call('ZREM', KEYS[10], id)
if delayed == 0 and dead == 0 then
  local _, lane, _, _, _, tenant = read_meta(KEYS[7], id)
  unlink_anywhere(lane, tenant_of(tenant, envelope), id, {high = KEYS[13], normal = KEYS[14]})
end
forget(KEYS[6], KEYS[7], id, {{kind = 'h', key = KEYS[12]}})
return 1
