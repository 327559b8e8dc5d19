-- withdraw_unstarted.lua: take a job that is waiting and was never claimed out of the queue,
-- so that it can be sent to another queue (overflow to a provider, ADR 0017). A job that
-- was ever claimed, is in flight, delayed, dead or unknown stays where it is: it may have
-- been started, and only the queue that started it may finish it.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] deadlines   KEYS[9] finish:high
-- KEYS[10] finish:normal
-- ARGV[1] job id
-- Returns 1 withdrawn; 0 left alone.

local id = ARGV[1]
local envelope = redis.call('HGET', KEYS[6], id)
if not envelope or redis.call('HEXISTS', KEYS[7], id) == 1 then
  return 0
end
-- Without meta the job is waiting (or a lost write's debris, which unlink finds nowhere).
if not unlink_anywhere(nil, tenant_of('', envelope), id, {high = KEYS[9], normal = KEYS[10]}) then
  return 0
end
redis.call('ZREM', KEYS[8], id)
forget(KEYS[6], KEYS[7], id, {})
return 1
