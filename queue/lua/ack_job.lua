-- ack_job.lua: the job is finished (its result is recorded in PostgreSQL); remove every
-- trace of it from Redis.
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] jobs   KEYS[4] meta   KEYS[5] leases
-- KEYS[6] delayed     KEYS[7] dead          KEYS[8] cancelled set         KEYS[9] errors
-- ARGV[1] job id   ARGV[2] consumer name, or '' to remove whoever holds it
-- ARGV[3] fence: '<attempt>:<token>' of the acking claim, or '' (optional) for any
-- Returns 1 removed; 0 no such job; -1 in flight with another consumer or under another
-- claim (nothing changed).

local id = ARGV[1]
if redis.call('HEXISTS', KEYS[3], id) == 0 then
  return 0
end
local in_flight = redis.call('ZSCORE', KEYS[5], id)
local attempt, lane, holder, _, token = read_meta(KEYS[4], id)
if ARGV[2] ~= '' and in_flight and holder ~= ARGV[2] then
  return -1
end
local fence = ARGV[3] or ''
if fence ~= '' and in_flight and fence ~= attempt .. ':' .. token then
  return -1
end
local delayed = redis.call('ZREM', KEYS[6], id)
local dead = redis.call('ZREM', KEYS[7], id)
if not in_flight and delayed == 0 and dead == 0 then
  -- Still waiting (e.g. redelivered, then finished by its first holder): unlink it.
  if lane then
    redis.call('LREM', lane_key(lane), 1, id)
  else
    redis.call('LREM', KEYS[1], 1, id)
    redis.call('LREM', KEYS[2], 1, id)
  end
end
forget(KEYS[3], KEYS[4], id, {{kind = 'z', key = KEYS[5]}, {kind = 's', key = KEYS[8]}, {kind = 'h', key = KEYS[9]}})
return 1
