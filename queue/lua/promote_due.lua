-- promote_due.lua: delayed retries whose time has come go to the front of their tenant's
-- jobs in their lane.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] delayed   KEYS[9] signal
-- ARGV[1] max jobs to promote   ARGV[2] signal cap
-- Returns the promoted ids.

local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local promoted = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[8], id)
  local envelope = redis.call('HGET', KEYS[6], id)
  if envelope then
    local attempt, lane, _, _, _, tenant = read_meta(KEYS[7], id)
    lane = lane_name(lane)
    tenant = tenant_of(tenant, envelope)
    write_meta(KEYS[7], id, attempt, lane, '', now, '', tenant)
    requeue_front(lane, tenant, id, attempt)
    promoted[#promoted + 1] = id
  else
    redis.call('HDEL', KEYS[7], id)
  end
end
if #promoted > 0 then
  wake(KEYS[9], #promoted, tonumber(ARGV[2]))
end
return promoted
