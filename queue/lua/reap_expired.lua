-- reap_expired.lua: jobs whose lease ran out go back to the front of their lane (attempt
-- is raised at the next claim), or to the dead set when no attempts remain; cancelled ones
-- are dropped. Also forgets consumers not seen for a while.
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] jobs   KEYS[4] meta   KEYS[5] leases
-- KEYS[6] dead        KEYS[7] errors        KEYS[8] cancelled set   KEYS[9] signal
-- KEYS[10] consumers   KEYS[11] slots
-- ARGV[1] max jobs to reap   ARGV[2] consumer liveness, ms   ARGV[3] signal cap
-- Returns {{requeued ids}, {dead ids}, {cancelled ids}}.

local now = now_ms()
local gone = redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, 1000)
for _, consumer in ipairs(gone) do
  redis.call('ZREM', KEYS[10], consumer)
  redis.call('HDEL', KEYS[11], consumer)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local requeued, dead, cancelled = {}, {}, {}
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[5], id)
  local envelope = redis.call('HGET', KEYS[3], id)
  if redis.call('SREM', KEYS[8], id) == 1 or not envelope then
    forget(KEYS[3], KEYS[4], id, {{kind = 'h', key = KEYS[7]}})
    cancelled[#cancelled + 1] = id
  else
    local attempt, lane, holder = read_meta(KEYS[4], id)
    lane = lane or 'normal'
    write_meta(KEYS[4], id, attempt, lane, '', now)
    if attempt >= max_attempts_of(envelope) then
      redis.call('ZADD', KEYS[6], now, id)
      redis.call('HSET', KEYS[7], id, 'lease expired on attempt ' .. attempt .. ' (last holder ' .. holder .. ')')
      dead[#dead + 1] = id
    else
      redis.call('RPUSH', lane_key(lane), id)
      requeued[#requeued + 1] = id
    end
  end
end
if #requeued > 0 then
  wake(KEYS[9], #requeued, tonumber(ARGV[3]))
end
return {requeued, dead, cancelled}
