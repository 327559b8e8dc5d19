-- read_claim.lua: the current claim of a job (read-only), in one atomic step: the callback
-- service compares a report's fence with it.
--
-- KEYS[1] meta   KEYS[2] leases
-- ARGV[1] job id
-- Returns the job's meta string while it is leased (in flight), else nil.

local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[2], id) then
  return false
end
return redis.call('HGET', KEYS[1], id)
