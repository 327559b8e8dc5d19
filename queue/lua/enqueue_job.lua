-- enqueue_job.lua: add one job to the back of a lane, unless its idempotency key was seen,
-- the queue is full, or the id already exists.
--
-- KEYS[1] wait list of the job's lane    KEYS[2] wait list of the other lane
-- KEYS[3] jobs hash                       KEYS[4] signal list
-- KEYS[5] idempotency key (optional)      KEYS[last] meta hash (only when ARGV[6] > 0)
-- ARGV[1] job id   ARGV[2] envelope JSON   ARGV[3] max waiting jobs (0 = no limit)
-- ARGV[4] idempotency window, seconds     ARGV[5] signal cap
-- ARGV[6] deliveries already made (optional, default 0): a job restored after Redis lost it
--         keeps counting its attempts from there   ARGV[7] its lane name (with ARGV[6])
-- Returns {code, id, jobs ahead in this lane, waiting in the other lane}
--   code 1 enqueued; 2 duplicate idempotency key (id = the first job); 3 queue full;
--   4 a job with this id already exists.

local id = ARGV[1]
local used = tonumber(ARGV[6] or '0') or 0
local meta_key = nil
if used > 0 then
  meta_key = KEYS[#KEYS]
end
local idem_key = nil
if #KEYS - (meta_key and 1 or 0) >= 5 then
  idem_key = KEYS[5]
end
local lane_len = redis.call('LLEN', KEYS[1])
local other_len = redis.call('LLEN', KEYS[2])

if idem_key then
  local existing = redis.call('GET', idem_key)
  if existing then
    return {2, existing, lane_len, other_len}
  end
end

local max_depth = tonumber(ARGV[3])
if max_depth > 0 and lane_len + other_len >= max_depth then
  return {3, '', lane_len, other_len}
end

if redis.call('HSETNX', KEYS[3], id, ARGV[2]) == 0 then
  return {4, id, lane_len, other_len}
end
redis.call('LPUSH', KEYS[1], id)
if idem_key then
  redis.call('SET', idem_key, id, 'EX', ARGV[4])
end
if meta_key then
  write_meta(meta_key, id, used, ARGV[7], '', now_ms())
end
wake(KEYS[4], 1, tonumber(ARGV[5]))
return {1, id, lane_len, other_len}
