-- queue_stats.lua: one consistent snapshot of a queue.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] meta   KEYS[7] leases   KEYS[8] delayed   KEYS[9] dead   KEYS[10] consumers
-- KEYS[11] slots
-- ARGV[1] consumer liveness, ms
-- Returns {now_ms, waiting_high, waiting_normal, in_flight, delayed, dead, live_consumers,
--          oldest_high_id, oldest_high_since_ms, oldest_normal_id, oldest_normal_since_ms,
--          {live_slots, tenants_high, tenants_normal}}  (tenants: with jobs waiting, parked
--          at their concurrency cap or not)
-- where an oldest id is '' for an empty lane and since_ms is 0 for a job never delivered
-- (its UUIDv7 id carries its enqueue time). The oldest job of a lane is the oldest next job
-- of its first 1,000 tenants in fair order: O(tenants), not O(jobs).
-- live_slots adds the slots each live consumer advertised when it last claimed (1 for one
-- that never said), quarantined ones left out: O(live consumers).

-- When a waiting job entered the lane: meta's since, else its UUIDv7 id's time.
local function entered(id)
  local _, _, _, since = read_meta(KEYS[6], id)
  if since > 0 then
    return since, since
  end
  return tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16), 0
end

local now = now_ms()
local live = redis.call('ZRANGEBYSCORE', KEYS[10], now - tonumber(ARGV[1]), '+inf')
local out = {now, redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('ZCARD', KEYS[7]), redis.call('ZCARD', KEYS[8]), redis.call('ZCARD', KEYS[9]),
  #live}
for _, lane in ipairs({'high', 'normal'}) do
  local _, tenants_key = lane_keys(lane)
  local oldest_id, oldest_at, oldest_since = '', nil, 0
  for _, set in ipairs({tenants_key, parked_key(tenants_key)}) do
    for _, tenant in ipairs(redis.call('ZRANGE', set, 0, 999)) do
      local head = redis.call('LINDEX', tenant_list(tenants_key, tenant), -1)
      if head then
        local id = id_of(head)
        local at, since = entered(id)
        if at and (not oldest_at or at < oldest_at) then
          oldest_id, oldest_at, oldest_since = id, at, since
        end
      end
    end
  end
  out[#out + 1] = oldest_id
  out[#out + 1] = oldest_since
end
local slots = 0
for _, consumer in ipairs(live) do
  -- A quarantined consumer is alive but runs nothing new: no capacity.
  if redis.call('HEXISTS', KEYS[5], QUARANTINE .. consumer) == 0 then
    slots = slots + (tonumber(redis.call('HGET', KEYS[11], consumer)) or 1)
  end
end
out[#out + 1] = {slots,
  redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', parked_key(KEYS[3])),
  redis.call('ZCARD', KEYS[4]) + redis.call('ZCARD', parked_key(KEYS[4]))}
return out
