-- prelude.lua: helpers prepended to every gpuq script at load time (Rust `concat!`).
--
-- Per-job state lives in per-queue hashes so that every key a script touches is known up
-- front and passed in KEYS (Redis Cluster-safe; all keys share the `{queue}` hash tag):
--   jobs  HASH  id -> envelope JSON (from enqueue until the job finishes)
--   meta  HASH  id -> "<attempt>|<lane>|<consumer>|<since_ms>|<token>" (once a job was claimed)
-- `attempt` counts deliveries started; `consumer` is empty unless the job is in flight;
-- `since_ms` is when the job entered its current state (lease start, queued, delayed, dead);
-- `token` is the claim's fence token (the claimer's random nonce), empty unless in flight.
-- Together, attempt and token are the delivery's fence: the callback service applies a
-- report only when both match the job's current claim (docs/protocol.md, "The fence").

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Reads the four fields of meta written before fence tokens existed, too (token '').
local function read_meta(meta_key, id)
  local v = redis.call('HGET', meta_key, id)
  if not v then
    return 0, nil, '', 0, ''
  end
  local attempt, lane, consumer, since, token =
    string.match(v, '^(%d+)|(%a*)|([^|]*)|(%d+)|?([^|]*)$')
  return tonumber(attempt) or 0, lane, consumer or '', tonumber(since) or 0, token or ''
end

local function write_meta(meta_key, id, attempt, lane, consumer, since, token)
  redis.call('HSET', meta_key, id,
    attempt .. '|' .. lane .. '|' .. consumer .. '|' .. since .. '|' .. (token or ''))
end

-- The envelope is produced by gpuq-schemas; `max_attempts` is a top-level integer.
local function max_attempts_of(envelope)
  local ok, decoded = pcall(cjson.decode, envelope)
  if ok and type(decoded) == 'table' and tonumber(decoded['max_attempts']) then
    return tonumber(decoded['max_attempts'])
  end
  return 1
end

-- Pushes up to `n` wake-up tokens, keeping the signal list at most `cap` long.
local function wake(signal_key, n, cap)
  local have = redis.call('LLEN', signal_key)
  local add = math.min(n, cap - have)
  for _ = 1, add do
    redis.call('LPUSH', signal_key, '1')
  end
end

-- Deletes every trace of a job except the waiting lists (callers LREM when needed).
local function forget(jobs_key, meta_key, id, extra_sets)
  redis.call('HDEL', jobs_key, id)
  redis.call('HDEL', meta_key, id)
  for _, k in ipairs(extra_sets) do
    if k.kind == 'z' then
      redis.call('ZREM', k.key, id)
    elseif k.kind == 's' then
      redis.call('SREM', k.key, id)
    else
      redis.call('HDEL', k.key, id)
    end
  end
end

-- The waiting list of a lane: KEYS[1] is always `wait:high` and KEYS[2] `wait:normal` in
-- scripts that move jobs between lanes.
local function lane_key(lane)
  if lane == 'high' then
    return KEYS[1]
  end
  return KEYS[2]
end

