-- enqueue_job.lua: add one job behind its tenant's other waiting jobs in a lane, unless its
-- idempotency key was seen, the queue is full, the id already exists, or it would not start
-- in time.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] finish:high   KEYS[7] finish:normal   KEYS[8] jobs   KEYS[9] signal
-- KEYS[10] meta         KEYS[11] deadlines      KEYS[12] idempotency key (optional)
-- ARGV[1] job id   ARGV[2] envelope JSON   ARGV[3] max waiting jobs (0 = no limit)
-- ARGV[4] idempotency window, seconds     ARGV[5] signal cap
-- ARGV[6] deliveries already made (0 for a new job): a job restored after Redis lost it
--         keeps counting its attempts from there
-- ARGV[7] lane ('high' or 'normal')   ARGV[8] tenant ([A-Za-z0-9._:@-]{1,128})
-- ARGV[9] charge, at least 1: the job's expected GPU milliseconds divided by its tenant's
--         weight
-- ARGV[10] start deadline, ms from now (optional, 0 = none): expire_unstarted.lua fails
--          the job if no consumer has claimed it by then
-- ARGV[11] admission bound (optional, -1 = none): refuse the job when more jobs than this
--          are expected to start before it
-- Returns {code, id, jobs expected to start before it, jobs waiting before it in both lanes,
--          work ahead of it: {high-lane jobs ahead, tenant, span, tenant, span, ...}
--          (prelude.lua, `jobs_before`; empty unless code 1 or 5)}
--   code 1 enqueued; 2 duplicate idempotency key (id = the first job); 3 queue full;
--   4 a job with this id already exists; 5 more jobs ahead than the admission bound
--   (nothing written).
--
-- Start-time fair queueing: the job's start tag is max(lane's virtual time, the finish tag
-- of its tenant's previous job); its finish tag is start + charge. Claims take the tenant
-- with the smallest start tag, so each tenant gets GPU time in proportion to its weight.

local id = ARGV[1]
local used = tonumber(ARGV[6]) or 0
local lane = ARGV[7]
local tenant = ARGV[8]
local charge = tonumber(ARGV[9])
if charge then
  charge = math.floor(charge)
end
local start_within = tonumber(ARGV[10] or '0') or 0
local max_ahead = tonumber(ARGV[11] or '-1') or -1
if LANES[lane] == nil or not string.match(tenant, '^[%w._:@-]+$') or #tenant > 128
    or not charge or charge < 1 then
  return redis.error_reply('ERR gpuq: bad lane, tenant or charge')
end
local idem_key = KEYS[12]
local high_len = redis.call('LLEN', KEYS[1])
local waiting = high_len + redis.call('LLEN', KEYS[2])

if idem_key then
  local existing = redis.call('GET', idem_key)
  if existing then
    return {2, existing, 0, waiting, {}}
  end
end

local max_depth = tonumber(ARGV[3])
if max_depth > 0 and waiting >= max_depth then
  return {3, '', 0, waiting, {}}
end

local wait_key, tenants_key = lane_keys(lane)
local finish_key = KEYS[6]
if lane == 'normal' then
  finish_key = KEYS[7]
end
local start = math.max(vtime(lane), tonumber(redis.call('ZSCORE', finish_key, tenant)) or 0)
-- The lane's first tenants by tag: a position is counted from them.
local first = redis.call('ZRANGE', tenants_key, 0, SCAN - 1, 'WITHSCORES')
local list = tenant_list(tenants_key, tenant)
local own = redis.call('LLEN', list)
local own_head = nil
if own > 0 then
  own_head = tag_of(redis.call('LINDEX', list, -1))
end
local ahead, work = jobs_before(tenants_key, finish_key, tenant, start, first, own, own > 0,
  own_head)
local high_ahead = 0
if lane == 'normal' then
  high_ahead = high_len
  ahead = ahead + high_len
end
table.insert(work, 1, tostring(high_ahead))
if max_ahead >= 0 and ahead > max_ahead then
  if redis.call('HEXISTS', KEYS[8], id) == 1 then
    return {4, id, 0, waiting, {}}
  end
  return {5, '', ahead, waiting, work}
end

if redis.call('HSETNX', KEYS[8], id, ARGV[2]) == 0 then
  return {4, id, 0, waiting, {}}
end
redis.call('ZADD', finish_key, start + charge, tenant)
if own == 0 then
  redis.call('ZADD', home_of(tenants_key, tenant), start, tenant)
end
redis.call('LPUSH', list, make_entry(start, id, used, false))
redis.call('LPUSH', wait_key, '1')
if idem_key then
  redis.call('SET', idem_key, id, 'EX', ARGV[4])
end
if used > 0 then
  write_meta(KEYS[10], id, used, lane, '', now_ms(), '', tenant)
end
if start_within > 0 then
  redis.call('ZADD', KEYS[11], now_ms() + start_within, id)
end
wake(KEYS[9], 1, tonumber(ARGV[5]))
return {1, id, ahead, waiting, work}
