-- release_job.lua: a consumer shutting down hands a job back at once, to the front of its
-- lane. The interrupted attempt is not counted against the job.
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] jobs   KEYS[4] meta   KEYS[5] leases
-- KEYS[6] signal      KEYS[7] cancelled set
-- ARGV[1] job id   ARGV[2] consumer name   ARGV[3] signal cap
-- ARGV[4] fence: '<attempt>:<token>' of the claim to release, or '' (optional) for any
-- Returns 1 released; 2 it had been cancelled and is now gone; 0 not held by this consumer
-- (or under another claim).

local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[5], id) then
  return 0
end
local attempt, lane, holder, _, token = read_meta(KEYS[4], id)
if holder ~= ARGV[2] then
  return 0
end
local fence = ARGV[4] or ''
if fence ~= '' and fence ~= attempt .. ':' .. token then
  return 0
end
redis.call('ZREM', KEYS[5], id)
if redis.call('SREM', KEYS[7], id) == 1 then
  forget(KEYS[3], KEYS[4], id, {})
  return 2
end
lane = lane or 'normal'
write_meta(KEYS[4], id, math.max(attempt - 1, 0), lane, '', now_ms())
redis.call('RPUSH', lane_key(lane), id)
wake(KEYS[6], 1, tonumber(ARGV[3]))
return 1
