-- claim_jobs.lua: take up to N waiting jobs, `high` lane first, oldest first, and lease
-- them to one consumer.
--
-- KEYS[1] wait:high   KEYS[2] wait:normal   KEYS[3] jobs   KEYS[4] meta
-- KEYS[5] leases      KEYS[6] consumers     KEYS[7] signal
-- KEYS[8] slots (optional, with ARGV[6])
-- ARGV[1] consumer name   ARGV[2] lease, ms   ARGV[3] max jobs   ARGV[4] signal cap
-- ARGV[5] fence token: a random nonce the claimer makes for this call (optional; callbacks
--         for a claim made without one cannot pass the callback service's fence check)
-- ARGV[6] how many jobs this consumer runs at once (optional): recorded in the slots hash,
--         so queue_stats.lua can count the live capacity (ETAs divide by it)
-- Returns a flat array {id, attempt, envelope, id, attempt, envelope, ...}; empty if none.
-- Also records the consumer as alive, and leaves a wake-up token when jobs remain so that
-- another idle consumer picks them up.

local consumer = ARGV[1]
local now = now_ms()
local lease_until = now + tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local token = ARGV[5] or ''
-- The token is stored between `|` separators: only hex, as gpuq's claimers make it.
if #token > 64 or not string.match(token, '^%x*$') then
  return redis.error_reply('ERR gpuq: the fence token must be at most 64 hex digits')
end
redis.call('ZADD', KEYS[6], now, consumer)
if KEYS[8] and ARGV[6] then
  local slots = tonumber(ARGV[6])
  if not slots or slots < 1 or slots > 100000 or slots ~= math.floor(slots) then
    return redis.error_reply('ERR gpuq: slots must be a whole number from 1 to 100000')
  end
  redis.call('HSET', KEYS[8], consumer, slots)
end

local out = {}
local got = 0
for _, lane in ipairs({'high', 'normal'}) do
  while got < want do
    local id = redis.call('RPOP', lane_key(lane))
    if not id then
      break
    end
    local envelope = redis.call('HGET', KEYS[3], id)
    if envelope then
      local attempt = read_meta(KEYS[4], id) + 1
      write_meta(KEYS[4], id, attempt, lane, consumer, now, token)
      redis.call('ZADD', KEYS[5], lease_until, id)
      out[#out + 1] = id
      out[#out + 1] = attempt
      out[#out + 1] = envelope
      got = got + 1
    else
      -- An id without a job body can only be debris of a lost write; drop it.
      redis.call('HDEL', KEYS[4], id)
    end
  end
end

if redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) > 0 then
  wake(KEYS[7], 1, tonumber(ARGV[4]))
end
return out
