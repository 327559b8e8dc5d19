-- requeue_dead.lua: an admin gives a dead-lettered job a fresh start: attempts reset to
-- zero, front of its tenant's jobs in its lane.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] dead   KEYS[9] errors   KEYS[10] signal
-- ARGV[1] job id   ARGV[2] signal cap
-- Returns 1 requeued; 0 not in the dead set.

local id = ARGV[1]
if redis.call('ZREM', KEYS[8], id) == 0 then
  return 0
end
local _, lane, _, _, _, tenant = read_meta(KEYS[7], id)
lane = lane_name(lane)
tenant = tenant_of(tenant, redis.call('HGET', KEYS[6], id))
write_meta(KEYS[7], id, 0, lane, '', now_ms(), '', tenant)
redis.call('HDEL', KEYS[9], id)
requeue_front(lane, tenant, id, 0)
wake(KEYS[10], 1, tonumber(ARGV[2]))
return 1
