-- prelude.lua: helpers prepended to every gpuq script at load time (Rust `concat!`).
--
-- Per-job state lives in per-queue hashes so that every key a script touches is known up
-- front and passed in KEYS (Redis Cluster-safe; all keys share the `{queue}` hash tag):
--   jobs  HASH  id -> envelope JSON (from enqueue until the job finishes)
--   meta  HASH  id -> "<attempt>|<lane>|<consumer>|<since_ms>|<token>|<tenant>|<flags>"
--               (once claimed)
-- `attempt` counts deliveries started; `consumer` is empty unless the job is in flight;
-- `since_ms` is when the job entered its current state (lease start, queued, delayed, dead);
-- `token` is the claim's fence token (the claimer's random nonce), empty unless in flight;
-- `tenant` is whose fair share the job counts against (empty in meta of earlier releases);
-- `flags` is 'c' while the job counts against its tenant's concurrency cap, else empty.
-- Together, attempt and token are the delivery's fence: the callback service applies a
-- report only when both match the job's current claim (docs/protocol.md, "The fence").

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- now_ms() as text, without formatting a number: the seconds and the first three digits
-- of the microseconds (TIME gives both as text).
local function now_ms_text()
  local t = redis.call('TIME')
  return t[1] .. string.sub('00000' .. t[2], -6, -4)
end

-- Reads meta written before fence tokens, tenants or flags existed, too (as '').
local function read_meta(meta_key, id)
  local v = redis.call('HGET', meta_key, id)
  if not v then
    return 0, nil, '', 0, '', '', ''
  end
  local attempt, lane, consumer, since, token, tenant, flags =
    string.match(v, '^(%d+)|(%a*)|([^|]*)|(%d+)|?([^|]*)|?([^|]*)|?([^|]*)$')
  return tonumber(attempt) or 0, lane, consumer or '', tonumber(since) or 0, token or '',
    tenant or '', flags or ''
end

local function write_meta(meta_key, id, attempt, lane, consumer, since, token, tenant, flags)
  redis.call('HSET', meta_key, id, attempt .. '|' .. lane .. '|' .. consumer .. '|' .. since
    .. '|' .. (token or '') .. '|' .. (tenant or '') .. '|' .. (flags or ''))
end

-- The envelope is produced by gpuq-schemas; `max_attempts` is a top-level integer.
local function max_attempts_of(envelope)
  local ok, decoded = pcall(cjson.decode, envelope)
  if ok and type(decoded) == 'table' and tonumber(decoded['max_attempts']) then
    return tonumber(decoded['max_attempts'])
  end
  return 1
end

-- Whose share a job counts against: meta's tenant when the job was claimed since tenants
-- existed, else the envelope's `tenant`, else its `user_id` (the default tenant).
local function tenant_of(meta_tenant, envelope)
  if meta_tenant ~= '' then
    return meta_tenant
  end
  local ok, decoded = pcall(cjson.decode, envelope or '')
  if ok and type(decoded) == 'table' then
    return tostring(decoded['tenant'] or decoded['user_id'] or '-')
  end
  return '-'
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

-- Fair share (docs/protocol.md, "Fair share"; ADR 0012). Scripts that touch waiting jobs
-- declare the same five keys first:
--   KEYS[1] wait:high       KEYS[2] wait:normal      LISTs of one token per waiting job:
--                                                    their length is the lane's backlog
--   KEYS[3] tenants:high    KEYS[4] tenants:normal   ZSETs tenant -> start tag of its next job
--   KEYS[5] vtime           HASH lane -> the lane's virtual time (start tag last served)
-- A tenant's waiting jobs are the LIST `<tenants key>:<tenant>` of entries (`parse_entry`),
-- oldest (next) at the right. Its name is built here, not passed in KEYS: it shares the
-- queue's hash tag, so it lives in the same Cluster slot as every declared key.
local LANES = {high = {wait = 1, tenants = 3}, normal = {wait = 2, tenants = 4}}

-- Meta written by a release without lanes, or debris, counts as the normal lane.
local function lane_name(lane)
  if lane == 'high' then
    return 'high'
  end
  return 'normal'
end

local function lane_keys(lane)
  local l = LANES[lane] or LANES.normal
  return KEYS[l.wait], KEYS[l.tenants]
end

local function tenant_list(tenants_key, tenant)
  return tenants_key .. ':' .. tenant
end

-- A tenant's list holds entries `[r]<tag>:<n>|<id>`: the job's start tag, the deliveries it
-- already had and its id. `r` marks a redelivery: serving it does not move the virtual
-- time, since its tag is the virtual time it was handed back at. Entries of the previous
-- release are `[r]<tag>|<id>`: their count is in meta (`n` is then '').
local function parse_entry(entry)
  return string.match(entry, '^(r?)(%d+):?(%d*)|(.*)$')
end

local function tag_of(entry)
  return tonumber(string.match(entry, '^r?(%d+)')) or 0
end

local function id_of(entry)
  return string.match(entry, '|(.*)$')
end

-- Tags are whole virtual milliseconds; '%.0f' keeps them out of exponent notation.
local function fmt_tag(tag)
  return string.format('%.0f', tag)
end

local function make_entry(tag, id, deliveries, redelivery)
  local e = fmt_tag(tag) .. ':' .. (deliveries or 0) .. '|' .. id
  if redelivery then
    return 'r' .. e
  end
  return e
end

-- A lane's virtual time: the start tag of the job it served last (a claim stores it). It
-- only grows: every job is tagged at or after it, claims take the smallest tag waiting, and
-- a tag that could be older (a redelivery's, a parked tenant's) is never stored below it.
local function vtime(lane)
  return tonumber(redis.call('HGET', KEYS[5], lane)) or 0
end

-- After a tenant's next job left its list: the tenant's new start tag, or out of the set
-- it waits in (`home`: the lane's tenants set unless given) when it has nothing waiting.
-- Returns true if the tenant still has jobs.
local function retag(tenants_key, tenant, home)
  home = home or tenants_key
  local head = redis.call('LINDEX', tenant_list(tenants_key, tenant), -1)
  if head then
    redis.call('ZADD', home, string.match(head, '^r?(%d+)'), tenant)
    return true
  end
  redis.call('ZREM', home, tenant)
  return false
end

-- Per-tenant concurrency caps (ADR 0012, "Concurrency caps"). The share-state hash (the
-- `vtime` key, KEYS[5] where the lanes are declared) also holds, only while any cap is
-- configured, `cap` (the default cap, '0' for none) and `cap:<tenant>` (a tenant's own),
-- and `run:<tenant>`: the tenant's jobs in flight that count against its cap (their meta
-- flag is 'c'). A tenant at its cap is parked: its entry moves from the lane's tenants set
-- to `<tenants key>/parked` with its tag, so no claim sees it until one of its jobs ends.
local function parked_key(tenants_key)
  return tenants_key .. '/parked'
end

-- The cap that applies to `tenant` (nil: none), given the hash's `cap` field.
local function cap_of(share_key, tenant, default)
  local cap = tonumber(redis.call('HGET', share_key, 'cap:' .. tenant)) or tonumber(default)
  if cap and cap > 0 then
    return cap
  end
  return nil
end

-- Whether `tenant` has as many counted jobs in flight as its cap allows.
local function at_cap(share_key, tenant)
  local v = redis.call('HMGET', share_key, 'cap', 'cap:' .. tenant, 'run:' .. tenant)
  local cap = v[1] and (tonumber(v[2]) or tonumber(v[1]))
  if not cap or cap <= 0 then
    return false
  end
  return (tonumber(v[3]) or 0) >= cap
end

-- Moves `tenant` from set `from` to set `to`, if it is in `from`. Returns true if moved.
local function move_tenant(from, to, tenant)
  local score = redis.call('ZSCORE', from, tenant)
  if not score then
    return false
  end
  redis.call('ZREM', from, tenant)
  redis.call('ZADD', to, score, tenant)
  return true
end

-- Parks `tenant` in both lanes when it is at its cap, else brings it back; returns true if
-- it came back (its jobs can be claimed again).
local function repark(share_key, tenants_high, tenants_normal, tenant)
  if at_cap(share_key, tenant) then
    move_tenant(tenants_high, parked_key(tenants_high), tenant)
    move_tenant(tenants_normal, parked_key(tenants_normal), tenant)
    return false
  end
  local back = move_tenant(parked_key(tenants_high), tenants_high, tenant)
  return move_tenant(parked_key(tenants_normal), tenants_normal, tenant) or back
end

-- A job that counted against its tenant's cap left flight (`flags` from its meta): one
-- fewer in flight, and a tenant parked at its cap goes back, waking an idle consumer.
local function uncount(flags, share_key, tenants_high, tenants_normal, tenant, signal_key)
  if flags ~= 'c' then
    return
  end
  if redis.call('HINCRBY', share_key, 'run:' .. tenant, -1) <= 0 then
    redis.call('HDEL', share_key, 'run:' .. tenant)
  end
  if repark(share_key, tenants_high, tenants_normal, tenant) and signal_key then
    wake(signal_key, 1, 1)
  end
end

-- Quarantine (ADR 0019). The share-state hash (KEYS[5]) also holds `quarantine:<consumer>`
-- -> the reason, for each consumer the callback service quarantined after its failures;
-- claim_jobs.lua refuses such a consumer in the read that fetches the caps. Its jobs in
-- flight are left alone: they end as they would.
local QUARANTINE = 'quarantine:'

-- Model routing (ADR 0020). A routed claim names what its worker has loaded (`warm`:
-- checkpoints and LoRAs), the models it can run at all (`runnable`, or '*'), a wait bound,
-- and its GPU memory in GiB (0: not said). A job is runnable here when its model is
-- runnable and it needs no more memory than the worker has (its envelope's `vram_gb`).
-- Among the next jobs in fair order (the first ROUTE_TENANTS tenants, the next ROUTE_JOBS
-- jobs of each) the claim takes the first runnable one that waited past the bound; else the
-- first runnable one whose model and LoRAs are all warm; else the first whose model is
-- warm; else the first runnable tenant's next job; else a runnable later job. If the window
-- holds nothing runnable, the next jobs of the following tenants (up to ROUTE_DEEP in all)
-- are looked at: a few tenants whose jobs no worker can run do not stop the lane. A job's
-- model is its envelope's `model` (the checkpoint it names), else its `model_variant`; one
-- whose envelope does not decode runs only on a worker that runs any model, and is never
-- warm. Its wait runs from its UUIDv7 id's time.
local ROUTE_TENANTS, ROUTE_JOBS, ROUTE_DEEP = 4, 4, 32
-- Counters in the share-state hash: jobs routed claims took whose model was warm on the
-- worker, and the others (a model load each): the warm-hit ratio admins watch.
local ROUTED_WARM, ROUTED_COLD = 'routed_warm', 'routed_cold'

local function csv_set(text)
  local set = {}
  for item in string.gmatch(text or '', '[^,]+') do
    set[item] = true
  end
  return set
end

-- A whole number from 0 to `max` given as text ('' or nil: 0); nil when it is not one.
local function whole(text, max)
  if text == nil or text == '' then
    return 0
  end
  local n = tonumber(text)
  if n and n >= 0 and n <= max and n == math.floor(n) then
    return n
  end
  return nil
end

-- The route of a claim from its arguments: {warm, runnable (nil: any), bound_ms, vram (0:
-- any), needs: what the jobs looked at so far in this call need, by id}; nil and an error
-- message when the bound or the memory is not a whole number.
local function route_of(warm, runnable, bound, vram)
  local r = {warm = csv_set(warm), bound = whole(bound, 1e12), vram = whole(vram, 1e6),
    needs = {}}
  if not r.bound or not r.vram then
    return nil, 'ERR gpuq: the wait bound (ms) and the GPU memory (GiB) must be whole numbers'
  end
  if runnable == nil or runnable == '' then
    return nil, "ERR gpuq: the runnable models may not be empty ('*': any)"
  end
  if runnable ~= '*' then
    r.runnable = csv_set(runnable)
  end
  return r
end

-- The enqueue time of a job, ms, from its UUIDv7 id.
local function id_time(id)
  return tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16) or 0
end

-- A waiting entry whose job body is gone (debris of a lost write): any claim takes it, and
-- drops it (claim_jobs.lua), so that a fleet of routed workers cleans it up too.
local ORPHAN = {orphan = true, loras = {}}

-- What job `id` needs: {model, vram, loras (names)}; ORPHAN when it has no body; false when
-- its envelope does not decode. Decoded once per call.
local function needs_of(route, jobs_key, id)
  local needs = route.needs[id]
  if needs == nil then
    needs = false
    local body = redis.call('HGET', jobs_key, id)
    local ok, env = pcall(cjson.decode, body or '')
    if not body then
      needs = ORPHAN
    elseif ok and type(env) == 'table' then
      local model = env.model
      if type(model) ~= 'string' then
        model = env.model_variant
      end
      local loras = {}
      if type(env.loras) == 'table' then
        for _, lora in ipairs(env.loras) do
          if type(lora) == 'table' and type(lora.name) == 'string' then
            loras[#loras + 1] = lora.name
          end
        end
      end
      if type(model) == 'string' then
        needs = {model = model, vram = tonumber(env.vram_gb) or 0, loras = loras}
      end
    end
    route.needs[id] = needs
  end
  return needs
end

local function runnable_here(route, needs)
  if needs and needs.orphan then
    return true
  end
  if not needs then
    -- Any worker that runs any model takes it, and fails it when it cannot decode it: a
    -- job nobody takes would wait forever.
    return not route.runnable
  end
  if route.vram > 0 and needs.vram > route.vram then
    return false
  end
  return not route.runnable or route.runnable[needs.model] or false
end

-- What a claim takes is loaded next: later picks of the same call count it as warm (a
-- worker claiming for several slots loads a model once).
local function will_load(route, needs)
  if needs and not needs.orphan then
    route.warm[needs.model] = true
    for _, lora in ipairs(needs.loras) do
      route.warm[lora] = true
    end
  end
end

-- How warm a job is on this worker: 0 its model is not loaded, 1 its model is, 2 its model
-- and every one of its LoRAs are.
local function warmth(route, needs)
  if not needs or not route.warm[needs.model] then
    return 0
  end
  for _, lora in ipairs(needs.loras) do
    if not route.warm[lora] then
      return 1
    end
  end
  return 2
end

-- The job a routed claim takes from a lane: returns its tenant, its entry, whether it is the
-- tenant's next job, and whether it is the job the fair share alone would serve (the first
-- tenant's next job: only that one moves the lane's virtual time); nil when nothing in reach
-- is runnable here.
local function pick_routed(tenants_key, jobs_key, route, now)
  local warm_pick, warm_best, head_pick, later_pick = nil, 0, nil, nil
  local tenants = redis.call('ZRANGE', tenants_key, 0, ROUTE_DEEP - 1)
  for t = 1, math.min(#tenants, ROUTE_TENANTS) do
    local tenant = tenants[t]
    local entries = redis.call('LRANGE', tenant_list(tenants_key, tenant), -ROUTE_JOBS, -1)
    for i = #entries, 1, -1 do
      local entry = entries[i]
      local id = id_of(entry)
      local needs = needs_of(route, jobs_key, id)
      if runnable_here(route, needs) then
        local head = i == #entries
        local pick = {tenant, entry, head, t == 1 and head}
        if route.bound > 0 and now - id_time(id) >= route.bound then
          return pick[1], pick[2], pick[3], pick[4]
        end
        local w = warmth(route, needs)
        if w > warm_best then
          warm_pick, warm_best = pick, w
        end
        if head then
          head_pick = head_pick or pick
        else
          later_pick = later_pick or pick
        end
      end
    end
  end
  local pick = warm_pick or head_pick or later_pick
  if pick then
    return pick[1], pick[2], pick[3], pick[4]
  end
  for t = ROUTE_TENANTS + 1, #tenants do
    local tenant = tenants[t]
    local entry = redis.call('LINDEX', tenant_list(tenants_key, tenant), -1)
    if entry and runnable_here(route, needs_of(route, jobs_key, id_of(entry))) then
      return tenant, entry, true, false
    end
  end
  return nil
end

-- The set a tenant with waiting jobs belongs in: the lane's tenants set, or parked.
local function home_of(tenants_key, tenant)
  if at_cap(KEYS[5], tenant) then
    return parked_key(tenants_key)
  end
  return tenants_key
end

-- Puts a job back in front of its tenant's other jobs, at the lane's virtual time: a
-- redelivery goes next (it was charged when first enqueued), as at the front of a FIFO.
-- `deliveries`: the attempts it already had.
local function requeue_front(lane, tenant, id, deliveries)
  local wait_key, tenants_key = lane_keys(lane)
  local v = vtime(lane)
  redis.call('RPUSH', tenant_list(tenants_key, tenant), make_entry(v, id, deliveries, true))
  redis.call('ZADD', home_of(tenants_key, tenant), v, tenant)
  redis.call('LPUSH', wait_key, '1')
end

-- The entry of job `id` in `list`: among the next 16 first (where jobs past their start
-- deadline are), then among the rest (O(n) in the tenant's waiting jobs, like LREM).
-- Returns the entry and how many of the tenant's jobs are ahead of it (0: its next job).
local function find_entry(list, id)
  local near = redis.call('LRANGE', list, -16, -1)
  for i = #near, 1, -1 do
    if id_of(near[i]) == id then
      return near[i], #near - i
    end
  end
  local far = redis.call('LRANGE', list, 0, -17)
  for i = #far, 1, -1 do
    if id_of(far[i]) == id then
      return far[i], #near + #far - i
    end
  end
  return nil, 0
end

-- Takes a waiting job out of its tenant's list wherever it is. With `finish` (the lanes'
-- finish keys, {high = ..., normal = ...}), a tenant left with nothing waiting loses its
-- finish tag, so its next job starts at the virtual time: a cancelled or expired flood
-- costs its tenant no share. Returns true if the job was there.
local function unlink_waiting(lane, tenant, id, finish)
  local wait_key, tenants_key = lane_keys(lane)
  local list = tenant_list(tenants_key, tenant)
  local entry, ahead = find_entry(list, id)
  if not entry then
    return false
  end
  redis.call('LREM', list, -1, entry)
  redis.call('RPOP', wait_key)
  if ahead == 0 then
    local home = tenants_key
    if redis.call('ZSCORE', parked_key(tenants_key), tenant) then
      home = parked_key(tenants_key)
    end
    retag(tenants_key, tenant, home)
  end
  if finish and redis.call('EXISTS', list) == 0 then
    redis.call('ZREM', finish[lane_name(lane)], tenant)
  end
  return true
end

-- Unlinks a waiting job whose lane may be unknown (never claimed: no meta).
local function unlink_anywhere(lane, tenant, id, finish)
  if lane and lane ~= '' then
    return unlink_waiting(lane, tenant, id, finish)
  end
  return unlink_waiting('normal', tenant, id, finish)
    or unlink_waiting('high', tenant, id, finish)
end


-- Acks (ack_job.lua, ack_jobs.lua; the KEYS both declare): the job is finished, its result
-- recorded in PostgreSQL; every trace of it leaves Redis. `consumer` '' removes it whoever
-- holds it; `fence` '<attempt>:<token>' only under that claim ('' any). Returns 1 removed;
-- 0 no such job; -1 in flight with another consumer or under another claim (nothing
-- changed).
local function ack(id, consumer, fence)
  local in_flight = redis.call('ZSCORE', KEYS[8], id)
  -- A job in flight is known; any other may not be (the common case costs no lookup).
  if not in_flight and redis.call('HEXISTS', KEYS[6], id) == 0 then
    return 0
  end
  local attempt, lane, holder, _, token, tenant, flags = read_meta(KEYS[7], id)
  if consumer ~= '' and in_flight and holder ~= consumer then
    return -1
  end
  if fence ~= '' and in_flight and fence ~= attempt .. ':' .. token then
    return -1
  end
  -- A job in flight is in no other set (the common case: nothing more to look up).
  if not in_flight then
    local delayed = redis.call('ZREM', KEYS[9], id)
    local dead = redis.call('ZREM', KEYS[10], id)
    if delayed == 0 and dead == 0 then
      -- Still waiting (e.g. redelivered, then finished by its first holder): unlink it.
      unlink_anywhere(lane, tenant_of(tenant, redis.call('HGET', KEYS[6], id)), id)
    end
  end
  forget(KEYS[6], KEYS[7], id, {{kind = 'z', key = KEYS[8]}, {kind = 's', key = KEYS[11]}})
  uncount(flags, KEYS[5], KEYS[3], KEYS[4], tenant, KEYS[13])
  -- Only a failed attempt records an error, so a job acked on its first has none.
  if attempt ~= 1 then
    redis.call('HDEL', KEYS[12], id)
  end
  return 1
end

-- The waiting jobs of a lane expected to start before a job of `tenant` with start tag
-- `start`, given the lane's first tenants by tag (`first`, a ZRANGE ... WITHSCORES reply of
-- at most SCAN entries), `own`, the tenant's waiting jobs ahead of it, and `own_head`, the
-- tag of the tenant's next job (nil when it has none waiting). Each other tenant whose next
-- job starts no later (a tie may go either way: counted ahead) adds the share of its waiting
-- jobs whose tags come first: its tags are spread evenly between its next start tag and its
-- last finish tag when its jobs cost the same. Past the first SCAN tenants, each further
-- one counts as many jobs as the last scanned: O(SCAN), never O(tenants). `queued`: the
-- tenant itself has jobs in the set (then it is in the ZCOUNT, and counted in `own`).
-- Also returns the work ahead, for an ETA: a flat list {tenant, span, ...} where a span is
-- the virtual milliseconds of that tenant's jobs ahead, its GPU milliseconds divided by its
-- weight (tags advance by charge = cost / weight); tenant '' is the unscanned rest.
local SCAN = 4
local function jobs_before(tenants_key, finish_key, tenant, start, first, own, queued, own_head)
  local work = {}
  if own > 0 and own_head then
    work = {tenant, fmt_tag(math.max(start - own_head, 0))}
  end
  local others, heads, scanned_self = {}, {}, false
  for i = 1, #first, 2 do
    local head = tonumber(first[i + 1])
    if head > start then
      break
    end
    if first[i] ~= tenant then
      others[#others + 1] = first[i]
      heads[#heads + 1] = head
    else
      scanned_self = true
    end
  end
  if #others == 0 then
    return own, work
  end
  local lasts = redis.call('ZMSCORE', finish_key, unpack(others))
  local ahead, least, least_span = 0, nil, 0
  for i, other in ipairs(others) do
    local len = redis.call('LLEN', tenant_list(tenants_key, other))
    local last = tonumber(lasts[i]) or heads[i]
    -- A finish tag below the head (a redelivery's tag, a finish not yet pruned) is no work.
    local span = math.max(last - heads[i], 0)
    if last > heads[i] then
      local all = math.max(len, 1)
      len = math.min(len, math.floor((start - heads[i]) * len / (last - heads[i])) + 1)
      -- Its jobs ahead, at its mean charge.
      span = math.floor(span * len / all)
    end
    ahead = ahead + len
    least, least_span = len, span
    work[#work + 1] = other
    work[#work + 1] = fmt_tag(span)
  end
  if #first == 2 * SCAN and tonumber(first[#first]) <= start then
    -- The tenants past the scanned ones start later than all of them: each counts as many
    -- jobs as the last scanned one (the fewest of them, by tag order). The enqueuing
    -- tenant, when it waits past them too, is in the count but already in `own`.
    local rest = redis.call('ZCOUNT', tenants_key, '-inf', fmt_tag(start)) - SCAN
    if queued and not scanned_self then
      rest = rest - 1
    end
    rest = math.max(rest, 0)
    ahead = ahead + rest * least
    if rest > 0 then
      work[#work + 1] = ''
      work[#work + 1] = fmt_tag(rest * least_span)
    end
  end
  return own + ahead, work
end
