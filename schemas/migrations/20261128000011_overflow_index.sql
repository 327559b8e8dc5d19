-- no-transaction
-- The reconciler's overflow pass (ADR 0017): a type's never-started jobs still waiting in
-- their own queue, oldest first. Built without blocking writes to `jobs`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_waiting_by_type_idx
    ON jobs (queue, job_type, created_at) WHERE status = 'queued' AND started_at IS NULL;
