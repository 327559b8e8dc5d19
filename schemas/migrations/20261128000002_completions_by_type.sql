-- The dispatcher's ETAs read each type's last completions (dispatcher/src/service_times.rs):
-- newest first per type, completed jobs only.
CREATE INDEX jobs_completed_by_type ON jobs (job_type, completed_at DESC)
    WHERE status = 'completed';
