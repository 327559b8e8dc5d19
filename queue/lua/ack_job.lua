-- ack_job.lua: the job is finished (its result is recorded in PostgreSQL); remove every
-- trace of it from Redis. The transition is `ack` in prelude.lua; ack_jobs.lua runs it for
-- many jobs in one call.
--
-- KEYS[1..5] wait:high, wait:normal, tenants:high, tenants:normal, vtime (prelude.lua)
-- KEYS[6] jobs   KEYS[7] meta   KEYS[8] leases   KEYS[9] delayed   KEYS[10] dead
-- KEYS[11] cancelled set   KEYS[12] errors   KEYS[13] signal (optional: wakes a consumer
-- when the ack frees a slot of a tenant parked at its concurrency cap)
-- ARGV[1] job id   ARGV[2] consumer name, or '' to remove whoever holds it
-- ARGV[3] fence: '<attempt>:<token>' of the acking claim, or '' (optional) for any
-- Returns 1 removed; 0 no such job; -1 in flight with another consumer or under another
-- claim (nothing changed).

return ack(ARGV[1], ARGV[2], ARGV[3] or '')
