-- discard_dead.lua: an admin deletes a dead-lettered job from Redis for good.
--
-- KEYS[1] jobs   KEYS[2] meta   KEYS[3] dead   KEYS[4] errors
-- ARGV[1] job id
-- Returns 1 deleted; 0 not in the dead set (nothing changed).

local id = ARGV[1]
if redis.call('ZREM', KEYS[3], id) == 0 then
  return 0
end
forget(KEYS[1], KEYS[2], id, {{kind = 'h', key = KEYS[4]}})
return 1
