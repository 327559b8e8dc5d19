-- enqueue_job.lua: add one job behind its tenant's other waiting jobs in a lane, unless its
-- idempotency key was seen, the queue is full, or the id already exists.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] finish:high   KEYS[7] finish:normal   KEYS[8] jobs   KEYS[9] signal
-- KEYS[10] meta         KEYS[11] idempotency key (optional)
-- ARGV[1] job id   ARGV[2] envelope JSON   ARGV[3] max waiting jobs (0 = no limit)
-- ARGV[4] idempotency window, seconds     ARGV[5] signal cap
-- ARGV[6] deliveries already made (0 for a new job): a job restored after Redis lost it
--         keeps counting its attempts from there
-- ARGV[7] lane ('high' or 'normal')   ARGV[8] tenant ([A-Za-z0-9._:@-]{1,128})
-- ARGV[9] charge, at least 1: the job's expected GPU milliseconds divided by its tenant's
--         weight
-- Returns {code, id, jobs expected to start before it, jobs waiting before it in both lanes}
--   code 1 enqueued; 2 duplicate idempotency key (id = the first job); 3 queue full;
--   4 a job with this id already exists.
--
-- Start-time fair queueing: the job's start tag is max(lane's virtual time, the finish tag
-- of its tenant's previous job); its finish tag is start + charge. Claims take the tenant
-- with the smallest start tag, so each tenant gets GPU time in proportion to its weight.

local id = ARGV[1]
local used = tonumber(ARGV[6]) or 0
local lane = ARGV[7]
local tenant = ARGV[8]
local charge = tonumber(ARGV[9])
if LANES[lane] == nil or not string.match(tenant, '^[%w._:@-]+$') or #tenant > 128
    or not charge or charge < 1 then
  return redis.error_reply('ERR gpuq: bad lane, tenant or charge')
end
local idem_key = KEYS[11]
local waiting = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])

if idem_key then
  local existing = redis.call('GET', idem_key)
  if existing then
    return {2, existing, 0, waiting}
  end
end

local max_depth = tonumber(ARGV[3])
if max_depth > 0 and waiting >= max_depth then
  return {3, '', 0, waiting}
end

if redis.call('HSETNX', KEYS[8], id, ARGV[2]) == 0 then
  return {4, id, 0, waiting}
end

local wait_key, tenants_key = lane_keys(lane)
local finish_key = KEYS[6]
if lane == 'normal' then
  finish_key = KEYS[7]
end
local v = vtime(lane)
-- Tenants whose last job finished (in virtual time) before now have no history that counts.
redis.call('ZREMRANGEBYSCORE', finish_key, '-inf', '(' .. fmt_tag(v))
local start = math.max(v, tonumber(redis.call('ZSCORE', finish_key, tenant)) or 0)
redis.call('ZADD', finish_key, start + charge, tenant)

local list = tenant_list(tenants_key, tenant)
local ahead = redis.call('LLEN', list)
if ahead == 0 then
  redis.call('ZADD', tenants_key, start, tenant)
end
-- The other tenants' jobs expected to start first: for each of the first 200 tenants whose
-- next job starts no later than this one (a tie may go either way: counted ahead), the
-- share of its waiting jobs whose tags come first. Its tags are spread evenly between its
-- next start tag and its last finish tag when its jobs cost the same.
local before = redis.call('ZRANGEBYSCORE', tenants_key, '-inf', fmt_tag(start),
  'WITHSCORES', 'LIMIT', 0, 200)
for i = 1, #before, 2 do
  local other = before[i]
  if other ~= tenant then
    local head = tonumber(before[i + 1])
    local len = redis.call('LLEN', tenant_list(tenants_key, other))
    local last = tonumber(redis.call('ZSCORE', finish_key, other)) or head
    if last > head then
      len = math.min(len, math.floor((start - head) * len / (last - head)) + 1)
    end
    ahead = ahead + len
  end
end
if lane == 'normal' then
  ahead = ahead + redis.call('LLEN', KEYS[1])
end

redis.call('LPUSH', list, fmt_tag(start) .. '|' .. id)
redis.call('LPUSH', wait_key, '1')
if idem_key then
  redis.call('SET', idem_key, id, 'EX', ARGV[4])
end
if used > 0 then
  write_meta(KEYS[10], id, used, lane, '', now_ms(), '', tenant)
end
wake(KEYS[9], 1, tonumber(ARGV[5]))
return {1, id, ahead, waiting}
