-- Overflow and fallback to hosted providers (ADR 0017). A job the dispatcher sent to a
-- provider's queue instead of its type's own says why; its `queue` (and its envelope's) is
-- then the provider's, so the callback service, the reconciler and cancellation follow it
-- there like any job.
--
-- No default (no rewrite of `jobs`), and the check NOT VALID: every existing row holds
-- null, so there is nothing to scan for; new and changed rows are checked all the same.
-- The reconciler's index is built concurrently by …0011.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS routed text;
ALTER TABLE jobs ADD CONSTRAINT jobs_routed_reason
    CHECK (routed IN ('no_live_worker', 'start_over_limit', 'waited_too_long')) NOT VALID;
