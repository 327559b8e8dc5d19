-- fail_job.lua: an attempt failed. Retry later (delayed set) if the failure is retryable
-- and attempts remain, otherwise dead-letter the job.
--
-- KEYS[1] jobs   KEYS[2] meta   KEYS[3] leases   KEYS[4] delayed   KEYS[5] dead
-- KEYS[6] errors   KEYS[7] cancelled set
-- KEYS[8] vtime   KEYS[9] tenants:high   KEYS[10] tenants:normal   KEYS[11] signal: the job's
-- slot goes back to its tenant's concurrency cap (prelude.lua, "caps"); optional only for
-- claims made while no cap was configured
-- ARGV[1] job id   ARGV[2] consumer name, or '' for any holder   ARGV[3] '1' retryable
-- ARGV[4] backoff delay, ms   ARGV[5] error message
-- ARGV[6] fence: '<attempt>:<token>' of the claim that failed, or '' (optional) for any
-- Returns {code, attempt, at_ms}: 1 retry scheduled at at_ms; 2 dead-lettered; 3 the job
-- had been cancelled and is now gone; 0 not in flight; -1 held by another consumer or
-- under another claim (a stale fence): nothing changed.

local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[3], id) then
  return {0, 0, 0}
end
local attempt, lane, holder, _, token, tenant, flags = read_meta(KEYS[2], id)
if ARGV[2] ~= '' and holder ~= ARGV[2] then
  return {-1, attempt, 0}
end
local fence = ARGV[6] or ''
if fence ~= '' and fence ~= attempt .. ':' .. token then
  return {-1, attempt, 0}
end
local now = now_ms()
redis.call('ZREM', KEYS[3], id)
if KEYS[10] then
  uncount(flags, KEYS[8], KEYS[9], KEYS[10], tenant, KEYS[11])
end
if redis.call('SREM', KEYS[7], id) == 1 then
  forget(KEYS[1], KEYS[2], id, {{kind = 'h', key = KEYS[6]}})
  return {3, attempt, now}
end
redis.call('HSET', KEYS[6], id, ARGV[5])
local max_attempts = max_attempts_of(redis.call('HGET', KEYS[1], id) or '')
if ARGV[3] == '1' and attempt < max_attempts then
  local due = now + tonumber(ARGV[4])
  redis.call('ZADD', KEYS[4], due, id)
  write_meta(KEYS[2], id, attempt, lane_name(lane), '', now, '', tenant)
  return {1, attempt, due}
end
redis.call('ZADD', KEYS[5], now, id)
write_meta(KEYS[2], id, attempt, lane_name(lane), '', now, '', tenant)
return {2, attempt, now}
