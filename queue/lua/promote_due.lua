-- promote_due.lua: delayed retries whose time has come go to the front of their lane.
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] jobs   KEYS[4] meta   KEYS[5] delayed
-- KEYS[6] signal
-- ARGV[1] max jobs to promote   ARGV[2] signal cap
-- Returns the promoted ids.

local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local promoted = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[5], id)
  if redis.call('HEXISTS', KEYS[3], id) == 1 then
    local attempt, lane = read_meta(KEYS[4], id)
    lane = lane or 'normal'
    write_meta(KEYS[4], id, attempt, lane, '', now)
    redis.call('RPUSH', lane_key(lane), id)
    promoted[#promoted + 1] = id
  else
    redis.call('HDEL', KEYS[4], id)
  end
end
if #promoted > 0 then
  wake(KEYS[6], #promoted, tonumber(ARGV[2]))
end
return promoted
