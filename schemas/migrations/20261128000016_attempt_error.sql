-- The error a failed attempt reported (ADR 0019): a quarantine's evidence shows what each
-- of the worker's own attempts said. The job's `error_message` is only its latest word: a
-- retry on a healthy worker completes (and clears it) or fails with another GPU's error.
ALTER TABLE job_attempts ADD COLUMN error text;
