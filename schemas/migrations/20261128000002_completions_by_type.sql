-- no-transaction
-- The dispatcher's ETAs read each type's last completions (dispatcher/src/service_times.rs):
-- newest first per type, completed jobs only. Built without blocking writes to `jobs`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_completed_by_type
    ON jobs (job_type, completed_at DESC) WHERE status = 'completed';
