-- Overflow and fallback to hosted providers (ADR 0017). A job the dispatcher sent to a
-- provider's queue instead of its type's own says why; its `queue` (and its envelope's) is
-- then the provider's, so the callback service, the reconciler and cancellation follow it
-- there like any job.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS routed text
    CHECK (routed IN ('no_live_worker', 'start_over_limit', 'waited_too_long'));

-- The reconciler's revisit: a type's jobs still waiting in their own queue, oldest first.
CREATE INDEX IF NOT EXISTS jobs_waiting_by_type_idx ON jobs (queue, job_type, created_at)
    WHERE status = 'queued' AND started_at IS NULL;
