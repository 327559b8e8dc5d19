-- ack_job.lua: the job is finished (its result is recorded in PostgreSQL); remove every
-- trace of it from Redis.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] leases   KEYS[9] delayed   KEYS[10] dead
-- KEYS[11] cancelled set   KEYS[12] errors   KEYS[13] signal (optional: wakes a consumer
-- when the ack frees a slot of a tenant parked at its concurrency cap)
-- ARGV[1] job id   ARGV[2] consumer name, or '' to remove whoever holds it
-- ARGV[3] fence: '<attempt>:<token>' of the acking claim, or '' (optional) for any
-- Returns 1 removed; 0 no such job; -1 in flight with another consumer or under another
-- claim (nothing changed).

local id = ARGV[1]
local in_flight = redis.call('ZSCORE', KEYS[8], id)
-- A job in flight is known; any other may not be (the common case costs no lookup).
if not in_flight and redis.call('HEXISTS', KEYS[6], id) == 0 then
  return 0
end
local attempt, lane, holder, _, token, tenant, flags = read_meta(KEYS[7], id)
if ARGV[2] ~= '' and in_flight and holder ~= ARGV[2] then
  return -1
end
local fence = ARGV[3] or ''
if fence ~= '' and in_flight and fence ~= attempt .. ':' .. token then
  return -1
end
-- A job in flight is in no other set (the common case: nothing more to look up).
if not in_flight then
  local delayed = redis.call('ZREM', KEYS[9], id)
  local dead = redis.call('ZREM', KEYS[10], id)
  if delayed == 0 and dead == 0 then
    -- Still waiting (e.g. redelivered, then finished by its first holder): unlink it.
    unlink_anywhere(lane, tenant_of(tenant, redis.call('HGET', KEYS[6], id)), id)
  end
end
forget(KEYS[6], KEYS[7], id, {{kind = 'z', key = KEYS[8]}, {kind = 's', key = KEYS[11]}})
uncount(flags, KEYS[5], KEYS[3], KEYS[4], tenant, KEYS[13])
-- Only a failed attempt records an error, so a job acked on its first has none.
if attempt ~= 1 then
  redis.call('HDEL', KEYS[12], id)
end
return 1
