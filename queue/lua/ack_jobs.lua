-- ack_jobs.lua: ack_job.lua for many jobs of one queue in one call. Acks that finish at
-- about the same time (a worker's slots, a batch of callbacks) share the call's cost: one
-- round trip and one function call instead of one each. Each job is acked as ack_job.lua
-- would, in order, so its answer is the one it would have had alone.
--
-- KEYS as ack_job.lua.
-- ARGV: a triple per job: job id, consumer name or '', fence or '' (as ack_job.lua's
-- ARGV[1..3]).
-- Returns one code per job, in order (ack_job.lua's replies).

if #ARGV % 3 ~= 0 then
  return redis.error_reply('ERR gpuq: ack_jobs takes (job id, consumer, fence) triples')
end
local codes = {}
for i = 1, #ARGV, 3 do
  codes[#codes + 1] = ack(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return codes
