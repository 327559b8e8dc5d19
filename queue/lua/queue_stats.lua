-- queue_stats.lua: one consistent snapshot of a queue, in O(log n).
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] meta   KEYS[4] leases   KEYS[5] delayed
-- KEYS[6] dead        KEYS[7] consumers   KEYS[8] slots
-- ARGV[1] consumer liveness, ms
-- Returns {now_ms, waiting_high, waiting_normal, in_flight, delayed, dead, live_consumers,
--          oldest_high_id, oldest_high_since_ms, oldest_normal_id, oldest_normal_since_ms,
--          live_slots}
-- live_slots adds the slots each live consumer advertised when it last claimed (1 for one
-- that never said): O(live consumers).
-- where an oldest id is '' for an empty lane and since_ms is 0 for a job never delivered
-- (its UUIDv7 id carries its enqueue time).

local now = now_ms()
local live = redis.call('ZRANGEBYSCORE', KEYS[7], now - tonumber(ARGV[1]), '+inf')
local out = {now, redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6]),
  #live}
for i = 1, 2 do
  local id = redis.call('LINDEX', KEYS[i], -1)
  if id then
    local _, _, _, since = read_meta(KEYS[3], id)
    out[#out + 1] = id
    out[#out + 1] = since
  else
    out[#out + 1] = ''
    out[#out + 1] = 0
  end
end
local slots = 0
for _, consumer in ipairs(live) do
  slots = slots + (tonumber(redis.call('HGET', KEYS[8], consumer)) or 1)
end
out[#out + 1] = slots
return out
