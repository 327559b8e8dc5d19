-- claim_jobs.lua: take up to N waiting jobs, `high` lane first, and within a lane from the
-- tenant whose next job has the smallest start tag (fair share; a tenant's own jobs in
-- order), and lease them to one consumer.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] leases   KEYS[9] consumers   KEYS[10] signal
-- KEYS[11] slots
-- ARGV[1] consumer name   ARGV[2] lease, ms   ARGV[3] max jobs   ARGV[4] signal cap
-- ARGV[5] fence token: a random nonce the claimer makes for this call (optional; callbacks
--         for a claim made without one cannot pass the callback service's fence check)
-- ARGV[6] how many jobs this consumer runs at once (optional, '' for none): recorded in the
--         slots hash, so queue_stats.lua can count the live capacity (ETAs divide by it)
-- ARGV[7..10] a route (optional; prelude.lua, "Model routing"): the worker's loaded models
--         and LoRAs, comma-separated ('' for none); the models it can run, comma-separated,
--         or '*' for any; the wait, ms, past which a job goes to any worker that can run it
--         (0: never); its GPU memory, GiB ('' or 0: not said). Routed claims count the
--         jobs whose model was warm and the others in the share-state hash (prelude.lua).
-- Returns a flat array {id, attempt, envelope, id, attempt, envelope, ...}; empty if none.
-- A tenant at its concurrency cap is parked and not served (prelude.lua, "caps").
-- A quarantined consumer (prelude.lua, "Quarantine") is refused with an error reply
-- `gpuq: quarantined: <reason>`, after it is recorded as alive; it leases nothing.
-- Also records the consumer as alive, and leaves a wake-up token when jobs remain so that
-- another idle consumer picks them up.

local consumer = ARGV[1]
-- Times as text, made once: Lua would format a number again at every use (printf of a
-- double is a good part of a claim's cost).
local now = now_ms_text()
local lease_until = string.format('%d', now + tonumber(ARGV[2]))
local want = tonumber(ARGV[3])
local token = ARGV[5] or ''
-- The token is stored between `|` separators: only hex, as gpuq's claimers make it.
if #token > 64 or not string.match(token, '^%x*$') then
  return redis.error_reply('ERR gpuq: the fence token must be at most 64 hex digits')
end
-- A malformed route is refused before anything is written.
local route, bad_route = nil, nil
if ARGV[7] then
  route, bad_route = route_of(ARGV[7], ARGV[8], ARGV[9], ARGV[10])
  if not route then
    return redis.error_reply(bad_route)
  end
end
redis.call('ZADD', KEYS[9], now, consumer)
-- Concurrency caps are off unless the share-state hash has its `cap` field (prelude.lua);
-- the same read tells whether this consumer is quarantined.
local policy = redis.call('HMGET', KEYS[5], 'cap', QUARANTINE .. consumer)
if policy[2] then
  -- The wake-up this consumer may have taken is passed on to a healthy one.
  if redis.call('EXISTS', KEYS[3], KEYS[4]) > 0 then
    wake(KEYS[10], 1, tonumber(ARGV[4]))
  end
  return redis.error_reply('ERR gpuq: quarantined: ' .. policy[2])
end
if ARGV[6] and ARGV[6] ~= '' then
  local slots = tonumber(ARGV[6])
  if not slots or slots < 1 or slots > 100000 or slots ~= math.floor(slots) then
    return redis.error_reply('ERR gpuq: slots must be a whole number from 1 to 100000')
  end
  redis.call('HSET', KEYS[11], consumer, slots)
end

local caps = policy[1]
local out = {}
local got = 0
-- Whether jobs remain, for the wake-up below: the tenant served last still waits (`more`),
-- or a lane not seen empty may hold some.
local more, lanes_empty = false, 0
-- Routed claims of jobs whose model was warm here, and of the rest (each a model load).
local warm_hits, cold = 0, 0
for l = 1, 2 do
  local lane = l == 1 and 'high' or 'normal'
  local wait_key, tenants_key = KEYS[l], KEYS[l + 2]
  local taken, served = 0, nil
  while got < want do
    -- `ordered`: the score the tenant was first in fair order by. It is its next job's tag,
    -- or more when a routed claim took a later job of it (`ZADD GT` below): the virtual time
    -- is the larger, so it never goes back.
    local tenant, entry, fair, ordered = nil, nil, true, nil
    if route then
      local pick, head
      tenant, pick, head, fair = pick_routed(tenants_key, KEYS[6], route, tonumber(now))
      if not tenant then
        -- Nothing here this worker can run: the jobs are left for others, and no wake-up
        -- is passed on (two idle workers that cannot run them would wake each other).
        lanes_empty = lanes_empty + 1
        break
      end
      if head then
        if fair then
          ordered = tonumber(redis.call('ZSCORE', tenants_key, tenant))
        end
        entry = redis.call('RPOP', tenant_list(tenants_key, tenant))
        more = retag(tenants_key, tenant)
      else
        -- A later job of the tenant, taken ahead of its next one: the tenant is charged as
        -- if served up to that job's tag (it moves back in fair order, never forward), so a
        -- tenant whose next job no worker runs cannot take the fleet with its later ones.
        entry = pick
        redis.call('LREM', tenant_list(tenants_key, tenant), -1, pick)
        redis.call('ZADD', tenants_key, 'GT', fmt_tag(tag_of(pick)), tenant)
        more = true
      end
    else
      local first = redis.call('ZRANGE', tenants_key, 0, 0, 'WITHSCORES')
      tenant, ordered = first[1], tonumber(first[2])
      if not tenant then
        lanes_empty = lanes_empty + 1
        break
      end
      entry = redis.call('RPOP', tenant_list(tenants_key, tenant))
      more = retag(tenants_key, tenant)
    end
    if entry then
      taken = taken + 1
      local redelivery, tag, deliveries, id = parse_entry(entry)
      if redelivery == '' and fair then
        served = tag
        if ordered and ordered > tonumber(tag) then
          served = fmt_tag(ordered)
        end
      end
      local envelope = redis.call('HGET', KEYS[6], id)
      if envelope then
        local attempt
        if deliveries ~= '' then
          attempt = tonumber(deliveries) + 1
        else
          attempt = read_meta(KEYS[7], id) + 1
        end
        local flags = ''
        local cap = caps and cap_of(KEYS[5], tenant, caps)
        if cap then
          flags = 'c'
          if redis.call('HINCRBY', KEYS[5], 'run:' .. tenant, 1) >= cap then
            repark(KEYS[5], KEYS[3], KEYS[4], tenant)
          end
        end
        write_meta(KEYS[7], id, attempt, lane, consumer, now, token, tenant, flags)
        if route then
          local needs = route.needs[id]
          if warmth(route, needs) > 0 then
            warm_hits = warm_hits + 1
          else
            cold = cold + 1
          end
          will_load(route, needs)
        end
        redis.call('ZADD', KEYS[8], lease_until, id)
        out[#out + 1] = id
        out[#out + 1] = attempt
        out[#out + 1] = envelope
        got = got + 1
      else
        -- An id without a job body can only be debris of a lost write; drop it.
        redis.call('HDEL', KEYS[7], id)
      end
    end
  end
  if taken > 0 then
    redis.call('RPOP', wait_key, taken)
  end
  -- The lane's virtual time. A tenant back from its cap may be served an older tag than
  -- the lane's: with caps on, the time never goes back.
  if served and (not caps or tonumber(served) > vtime(lane)) then
    redis.call('HSET', KEYS[5], lane, served)
  end
end
if warm_hits > 0 then
  redis.call('HINCRBY', KEYS[5], ROUTED_WARM, warm_hits)
end
if cold > 0 then
  redis.call('HINCRBY', KEYS[5], ROUTED_COLD, cold)
end

if more or (lanes_empty < 2 and redis.call('EXISTS', KEYS[3], KEYS[4]) > 0) then
  wake(KEYS[10], 1, tonumber(ARGV[4]))
end
return out
