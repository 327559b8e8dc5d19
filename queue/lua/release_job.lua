-- release_job.lua: a consumer shutting down hands a job back at once, to the front of its
-- tenant's jobs in its lane. The interrupted attempt is not counted against the job.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] leases   KEYS[9] signal   KEYS[10] cancelled set
-- ARGV[1] job id   ARGV[2] consumer name   ARGV[3] signal cap
-- ARGV[4] fence: '<attempt>:<token>' of the claim to release, or '' (optional) for any
-- Returns 1 released; 2 it had been cancelled and is now gone; 0 not held by this consumer
-- (or under another claim).

local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[8], id) then
  return 0
end
local attempt, lane, holder, _, token, tenant, flags = read_meta(KEYS[7], id)
if holder ~= ARGV[2] then
  return 0
end
local fence = ARGV[4] or ''
if fence ~= '' and fence ~= attempt .. ':' .. token then
  return 0
end
redis.call('ZREM', KEYS[8], id)
uncount(flags, KEYS[5], KEYS[3], KEYS[4], tenant, KEYS[9])
if redis.call('SREM', KEYS[10], id) == 1 then
  forget(KEYS[6], KEYS[7], id, {})
  return 2
end
lane = lane_name(lane)
tenant = tenant_of(tenant, redis.call('HGET', KEYS[6], id))
local deliveries = math.max(attempt - 1, 0)
write_meta(KEYS[7], id, deliveries, lane, '', now_ms(), '', tenant)
requeue_front(lane, tenant, id, deliveries)
wake(KEYS[9], 1, tonumber(ARGV[3]))
return 1
