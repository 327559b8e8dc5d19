-- Worker health (docs/adr/0019-quarantine.md). A failed attempt is evidence against the
-- worker when it may pass elsewhere (retryable: out of memory, a CUDA error, a run past its
-- limit) and against the job's input when it cannot (permanent: an invalid prompt).
-- `retryable` is set when the attempt ends with a failure report; NULL otherwise.
ALTER TABLE job_attempts ADD COLUMN retryable boolean;

-- Consumers stopped from claiming after their recent attempts failed across different
-- jobs. The row is the record; the queue's share-state hash enforces it (`quarantine:<c>`),
-- and the dispatcher's reconciler makes the two agree. At most one active row per consumer.
CREATE TABLE worker_quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text NOT NULL,
    consumer    text NOT NULL CHECK (length(consumer) BETWEEN 1 AND 128),
    since       timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL,
    -- The failed attempts that decided it: [{jobId, attempt, jobType, finishedAt, error}].
    evidence    jsonb NOT NULL,
    released_at timestamptz,
    released_by text,
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE UNIQUE INDEX worker_quarantine_active_idx ON worker_quarantine (consumer)
    WHERE released_at IS NULL;
CREATE INDEX worker_quarantine_released_idx ON worker_quarantine (consumer, released_at);
