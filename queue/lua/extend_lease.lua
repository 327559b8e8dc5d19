-- extend_lease.lua: the heartbeat. Renews a job's lease if this consumer still holds it and
-- tells the holder whether the job was cancelled.
--
-- KEYS[1] meta   KEYS[2] leases   KEYS[3] consumers   KEYS[4] cancelled set
-- ARGV[1] job id   ARGV[2] consumer name   ARGV[3] lease, ms
-- Returns 1 held (lease renewed); 2 cancelled (lease renewed so the holder can stop
-- cleanly); 0 lost (reaped, finished or held by someone else: stop working on it).

local id = ARGV[1]
local now = now_ms()
redis.call('ZADD', KEYS[3], now, ARGV[2])
if not redis.call('ZSCORE', KEYS[2], id) then
  return 0
end
local _, _, holder = read_meta(KEYS[1], id)
if holder ~= ARGV[2] then
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), id)
if redis.call('SISMEMBER', KEYS[4], id) == 1 then
  return 2
end
return 1
