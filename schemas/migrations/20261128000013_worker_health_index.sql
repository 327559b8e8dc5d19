-- no-transaction
-- A worker's recent attempts, newest first (the quarantine check after each failure, ADR
-- 0019). Built without blocking writes to `job_attempts`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS job_attempts_worker_idx
    ON job_attempts (worker_id, finished_at) WHERE finished_at IS NOT NULL;
