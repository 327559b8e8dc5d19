-- requeue_dead.lua: an admin gives a dead-lettered job a fresh start: attempts reset to
-- zero, front of its lane.
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] meta   KEYS[4] dead   KEYS[5] errors
-- KEYS[6] signal
-- ARGV[1] job id   ARGV[2] signal cap
-- Returns 1 requeued; 0 not in the dead set.

local id = ARGV[1]
if redis.call('ZREM', KEYS[4], id) == 0 then
  return 0
end
local _, lane = read_meta(KEYS[3], id)
lane = lane or 'normal'
write_meta(KEYS[3], id, 0, lane, '', now_ms())
redis.call('HDEL', KEYS[5], id)
redis.call('RPUSH', lane_key(lane), id)
wake(KEYS[6], 1, tonumber(ARGV[2]))
return 1
