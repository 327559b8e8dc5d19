-- reap_expired.lua: jobs whose lease ran out go back to the front of their tenant's jobs in
-- their lane (attempt is raised at the next claim), or to the dead set when no attempts
-- remain; cancelled ones are dropped. Also forgets consumers not seen for a while.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] leases   KEYS[9] dead   KEYS[10] errors
-- KEYS[11] cancelled set   KEYS[12] signal   KEYS[13] consumers   KEYS[14] slots
-- KEYS[15] finish:high     KEYS[16] finish:normal
-- ARGV[1] max jobs to reap   ARGV[2] consumer liveness, ms   ARGV[3] signal cap
-- Returns {{requeued ids}, {dead ids}, {cancelled ids}}.
-- Also forgets the finish tags older than each lane's virtual time: those tenants' history
-- no longer counts (max(V, F) = V), so enqueues need not look at it.

local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[15], '-inf', '(' .. fmt_tag(vtime('high')))
redis.call('ZREMRANGEBYSCORE', KEYS[16], '-inf', '(' .. fmt_tag(vtime('normal')))
local gone = redis.call('ZRANGEBYSCORE', KEYS[13], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, 1000)
for _, consumer in ipairs(gone) do
  redis.call('ZREM', KEYS[13], consumer)
  redis.call('HDEL', KEYS[14], consumer)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local requeued, dead, cancelled = {}, {}, {}
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[8], id)
  local envelope = redis.call('HGET', KEYS[6], id)
  local attempt, lane, holder, _, _, tenant, flags = read_meta(KEYS[7], id)
  uncount(flags, KEYS[5], KEYS[3], KEYS[4], tenant, KEYS[12])
  if redis.call('SREM', KEYS[11], id) == 1 or not envelope then
    forget(KEYS[6], KEYS[7], id, {{kind = 'h', key = KEYS[10]}})
    cancelled[#cancelled + 1] = id
  else
    lane = lane_name(lane)
    tenant = tenant_of(tenant, envelope)
    write_meta(KEYS[7], id, attempt, lane, '', now, '', tenant)
    if attempt >= max_attempts_of(envelope) then
      redis.call('ZADD', KEYS[9], now, id)
      redis.call('HSET', KEYS[10], id, 'lease expired on attempt ' .. attempt .. ' (last holder ' .. holder .. ')')
      dead[#dead + 1] = id
    else
      requeue_front(lane, tenant, id, attempt)
      requeued[#requeued + 1] = id
    end
  end
end
if #requeued > 0 then
  wake(KEYS[12], #requeued, tonumber(ARGV[3]))
end
return {requeued, dead, cancelled}
