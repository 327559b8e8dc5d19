-- job_position.lua: how many jobs are expected to start before a waiting job, under the
-- fair share (read-only; the count enqueue_job.lua answers, for a job already waiting).
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] finish:high   KEYS[9] finish:normal
-- ARGV[1] job id
-- Returns {count, work ahead} as enqueue_job.lua does, or {-1, {}} when the job is not
-- waiting (unknown, in flight, delayed, dead).
-- O(the tenant's waiting jobs) to find the job, plus O(1) for the other tenants.

local id = ARGV[1]
local envelope = redis.call('HGET', KEYS[6], id)
if not envelope then
  return {-1, {}}
end
local _, lane, consumer, _, _, tenant = read_meta(KEYS[7], id)
if consumer ~= '' then
  return {-1, {}}
end
tenant = tenant_of(tenant, envelope)
local lanes = {'normal', 'high'}
if lane and lane ~= '' then
  lanes = {lane_name(lane)}
end
for _, l in ipairs(lanes) do
  local _, tenants_key = lane_keys(l)
  local list = tenant_list(tenants_key, tenant)
  local entry, own = find_entry(list, id)
  if entry then
    local finish_key = KEYS[8]
    if l == 'normal' then
      finish_key = KEYS[9]
    end
    local first = redis.call('ZRANGE', tenants_key, 0, SCAN - 1, 'WITHSCORES')
    local own_head = tag_of(redis.call('LINDEX', list, -1))
    local ahead, work =
      jobs_before(tenants_key, finish_key, tenant, tag_of(entry), first, own, true, own_head)
    local high_ahead = 0
    if l == 'normal' then
      high_ahead = redis.call('LLEN', KEYS[1])
      ahead = ahead + high_ahead
    end
    table.insert(work, 1, tostring(high_ahead))
    return {ahead, work}
  end
end
return {-1, {}}
