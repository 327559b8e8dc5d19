-- enqueue_job.lua: add one job to the back of a lane, unless its idempotency key was seen,
-- the queue is full, or the id already exists.
--
-- KEYS[1] wait list of the job's lane    KEYS[2] wait list of the other lane
-- KEYS[3] jobs hash                       KEYS[4] signal list
-- KEYS[5] idempotency key (optional)
-- ARGV[1] job id   ARGV[2] envelope JSON   ARGV[3] max waiting jobs (0 = no limit)
-- ARGV[4] idempotency window, seconds     ARGV[5] signal cap
-- Returns {code, id, jobs ahead in this lane, waiting in the other lane}
--   code 1 enqueued; 2 duplicate idempotency key (id = the first job); 3 queue full;
--   4 a job with this id already exists.

local id = ARGV[1]
local lane_len = redis.call('LLEN', KEYS[1])
local other_len = redis.call('LLEN', KEYS[2])

if KEYS[5] then
  local existing = redis.call('GET', KEYS[5])
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
if KEYS[5] then
  redis.call('SET', KEYS[5], id, 'EX', ARGV[4])
end
wake(KEYS[4], 1, tonumber(ARGV[5]))
return {1, id, lane_len, other_len}
