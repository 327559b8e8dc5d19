-- The exact envelope a job was enqueued with, so the reconciler can put a job back on its
-- queue verbatim when Redis has lost it (restart without persistence, failover, eviction).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS envelope jsonb;
