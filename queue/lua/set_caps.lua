-- set_caps.lua: replace the queue's per-tenant concurrency caps, recount every tenant's
-- counted jobs in flight, and park or bring back each tenant accordingly (prelude.lua,
-- "caps"). Run when an admin sets a cap and on every maintenance tick, so the counts heal
-- within one tick whatever happened (a Redis restart, a lost acknowledgement).
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] signal   KEYS[7] leases   KEYS[8] meta
-- ARGV[1] version of these caps (whole ms; 0 = none): caps older than the ones set last
--         change nothing, so a sync that read the database before an admin's change cannot
--         undo it when it lands after
-- ARGV[2] default cap for every tenant (0 = none)
-- ARGV[3..] pairs of tenant, its own cap (1 to 100000)
-- Caps are off (claims count nothing) when the default is 0 and no tenant has a cap.
-- A job of a capped tenant already in flight counts from now on (its meta flag becomes 'c',
-- so its end gives the slot back), whether or not its claim counted it.
-- Returns the number of tenants parked now, or -1 when the caps were older (unchanged).

local share = KEYS[5]
local version = tonumber(ARGV[1])
if not version or version < 0 then
  return redis.error_reply('ERR gpuq: the caps version must be a number of at least 0')
end
if version < (tonumber(redis.call('HGET', share, 'caps_version')) or 0) then
  return -1
end
redis.call('HSET', share, 'caps_version', ARGV[1])
local default = tonumber(ARGV[2])
if not default or default < 0 or default > 100000 or default ~= math.floor(default) then
  return redis.error_reply('ERR gpuq: the default cap must be a whole number from 0 to 100000')
end
local caps = {}
for i = 3, #ARGV, 2 do
  local tenant, cap = ARGV[i], tonumber(ARGV[i + 1])
  if not string.match(tenant, '^[%w._:@-]+$') or #tenant > 128 or not cap or cap < 1
      or cap > 100000 or cap ~= math.floor(cap) then
    return redis.error_reply('ERR gpuq: bad tenant or cap')
  end
  caps[tenant] = cap
end

-- Every tenant whose state may change: old caps, old counts, parked ones, new caps.
local touched = {}
for _, field in ipairs(redis.call('HKEYS', share)) do
  local kind, tenant = string.match(field, '^(%a+):(.+)$')
  if kind == 'cap' or kind == 'run' then
    redis.call('HDEL', share, field)
    touched[tenant] = true
  end
end
for _, tenants_key in ipairs({KEYS[3], KEYS[4]}) do
  for _, tenant in ipairs(redis.call('ZRANGE', parked_key(tenants_key), 0, -1)) do
    touched[tenant] = true
  end
end

local on = default > 0 or next(caps) ~= nil
if on then
  redis.call('HSET', share, 'cap', default)
  for tenant, cap in pairs(caps) do
    redis.call('HSET', share, 'cap:' .. tenant, cap)
    touched[tenant] = true
  end
  -- The counts, from the jobs in flight: every job of a tenant with a cap counts, and
  -- is flagged so that its end gives the slot back.
  local ids = redis.call('ZRANGE', KEYS[7], 0, -1)
  for i = 1, #ids, 500 do
    local metas = redis.call('HMGET', KEYS[8], unpack(ids, i, math.min(i + 499, #ids)))
    for j, meta in ipairs(metas) do
      local head, tenant, flags =
        string.match(meta or '', '^(%d+|%a*|[^|]*|%d+|[^|]*)|([^|]*)|?([^|]*)$')
      if tenant and tenant ~= '' then
        if flags ~= 'c' and (caps[tenant] or default > 0) then
          redis.call('HSET', KEYS[8], ids[i + j - 1], head .. '|' .. tenant .. '|c')
          flags = 'c'
        end
        if flags == 'c' then
          redis.call('HINCRBY', share, 'run:' .. tenant, 1)
          touched[tenant] = true
        end
      end
    end
  end
else
  redis.call('HDEL', share, 'cap')
end

local back = false
for tenant in pairs(touched) do
  back = repark(share, KEYS[3], KEYS[4], tenant) or back
end
if back then
  wake(KEYS[6], 1, 1)
end
return redis.call('ZCARD', parked_key(KEYS[3])) + redis.call('ZCARD', parked_key(KEYS[4]))
