-- expire_unstarted.lua: jobs whose start deadline passed before any consumer claimed them
-- leave the queue (the caller then fails their rows with `start_deadline_exceeded`). A job
-- claimed at least once (it has meta) has started: its deadline no longer applies.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] deadlines   KEYS[9] finish:high
-- KEYS[10] finish:normal
-- ARGV[1] max jobs to expire
-- Returns the expired ids.

local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local expired = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[8], id)
  local envelope = redis.call('HGET', KEYS[6], id)
  if envelope and redis.call('HEXISTS', KEYS[7], id) == 0 then
    unlink_anywhere(nil, tenant_of('', envelope), id, {high = KEYS[9], normal = KEYS[10]})
    forget(KEYS[6], KEYS[7], id, {})
    expired[#expired + 1] = id
  end
end
return expired
