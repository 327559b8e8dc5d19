-- Metering (docs/adr/0014-credits.md): one row per attempt a worker started, with the
-- worker, its GPU, when it started and ended and how it ended. GPU-seconds are measured
-- from the attempt's fenced `processing` report (or its claim, for a worker that reports
-- none) to the report that ended it. Usage (`GET /v1/usage`, `/admin/usage`) and metered
-- prices read this table.
--
-- Outcomes: completed; failed (the job's last attempt failed); retried (it failed and the
-- job was queued again); cancelled; lost (the worker never reported its end: its lease
-- ran out or the job ended another way; finished_at is when gpuq noticed, an upper bound).

-- A job's life: 1, and one more each time an admin requeues it from the dead set, which
-- starts its attempts again from 1.
ALTER TABLE jobs ADD COLUMN life integer NOT NULL DEFAULT 1 CHECK (life >= 1);

CREATE TABLE job_attempts (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    life        integer NOT NULL CHECK (life >= 1),
    attempt     integer NOT NULL CHECK (attempt >= 1),
    user_id     uuid NOT NULL,
    tenant      text NOT NULL,
    job_type    text NOT NULL,
    worker_id   text,
    gpu_name    text CHECK (length(gpu_name) BETWEEN 1 AND 128),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('completed', 'failed', 'retried', 'cancelled', 'lost')),
    gpu_seconds double precision GENERATED ALWAYS AS
        (EXTRACT(EPOCH FROM (finished_at - started_at))::double precision) STORED,
    PRIMARY KEY (job_id, life, attempt),
    CHECK ((finished_at IS NULL) = (outcome IS NULL)),
    CHECK (finished_at >= started_at)
);
CREATE INDEX job_attempts_user_idx ON job_attempts (user_id, finished_at);
CREATE INDEX job_attempts_tenant_idx ON job_attempts (tenant, finished_at);

-- The tenant a job's fair share and credits count against: the envelope names it when it
-- is not the owner.
CREATE FUNCTION gpuq_job_tenant(j jobs) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT COALESCE(j.envelope ->> 'tenant', j.user_id::text) $$;

-- Opens attempt p_attempt of job j's life (a replayed report keeps the first start).
-- Attempts before it that never reported their end were lost.
CREATE FUNCTION gpuq_open_attempt(
    j jobs, p_attempt integer, p_worker text, p_gpu text, p_started timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    UPDATE job_attempts SET finished_at = GREATEST(now(), started_at), outcome = 'lost'
        WHERE job_id = j.id AND (life, attempt) < (j.life, p_attempt) AND finished_at IS NULL;
    INSERT INTO job_attempts (job_id, life, attempt, user_id, tenant, job_type, worker_id,
                              gpu_name, started_at)
        VALUES (j.id, j.life, p_attempt, j.user_id, gpuq_job_tenant(j), j.job_type, p_worker,
                p_gpu, LEAST(COALESCE(p_started, now()), now()))
        ON CONFLICT (job_id, life, attempt) DO UPDATE
            SET gpu_name = COALESCE(job_attempts.gpu_name, EXCLUDED.gpu_name)
            WHERE job_attempts.finished_at IS NULL;
END;
$$;

-- Ends attempt p_attempt of job j with p_outcome (opening it first if its worker never
-- reported `processing`: it started at p_started, its claim, or now). An attempt taken
-- for lost (its lease ran out, the job was requeued) whose worker reports its end after
-- all ends as reported. Returns the attempt's GPU-seconds, or NULL if it had already
-- ended (a replayed report).
CREATE FUNCTION gpuq_finish_attempt(
    j jobs, p_attempt integer, p_outcome text, p_worker text, p_gpu text,
    p_started timestamptz)
RETURNS double precision
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    secs double precision;
BEGIN
    PERFORM gpuq_open_attempt(j, p_attempt, p_worker, p_gpu, p_started);
    UPDATE job_attempts SET finished_at = GREATEST(now(), started_at), outcome = p_outcome
        WHERE job_id = j.id AND life = j.life AND attempt = p_attempt
          AND (finished_at IS NULL OR outcome = 'lost')
        RETURNING gpu_seconds INTO secs;
    RETURN secs;
END;
$$;

-- Whatever ends a job or takes it from its worker (a cancel, the reaper, the reconciler,
-- a start deadline) ends its open attempts too, in the same transaction: none stays open
-- on a job no worker holds.
CREATE FUNCTION gpuq_jobs_close_attempts() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE job_attempts
        SET finished_at = GREATEST(now(), started_at),
            outcome = CASE NEW.status WHEN 'cancelled' THEN 'cancelled' ELSE 'lost' END
        WHERE job_id = NEW.id AND finished_at IS NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_close_attempts
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (OLD.status = 'processing' AND NEW.status <> 'processing')
    EXECUTE FUNCTION gpuq_jobs_close_attempts();

-- gpuq_start_job as in 20261123000002 (which it calls: one state machine), also opening the
-- attempt with the worker's GPU.
CREATE FUNCTION gpuq_start_job(
    p_id uuid, p_from text[], p_worker text, p_attempt integer, p_gpu text)
RETURNS TABLE (id uuid, user_id uuid, job_type text, queue text, status text,
               worker_id text, created_at timestamptz, started_at timestamptz,
               applied boolean)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    j jobs%ROWTYPE;
    ok boolean;
BEGIN
    SELECT * INTO j FROM jobs WHERE jobs.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ok := j.status = ANY (p_from);
    IF ok THEN
        PERFORM 1 FROM gpuq_start_job(p_id, p_from, p_worker, p_attempt);
        -- Without a reported attempt: the next one if the job was waiting, else the one
        -- that runs (a repeated report must not open another).
        PERFORM gpuq_open_attempt(
            j, COALESCE(p_attempt, CASE WHEN j.status = 'queued' THEN j.attempts + 1
                                        ELSE GREATEST(j.attempts, 1) END),
            p_worker, p_gpu, NULL);
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok;
END;
$$;

-- gpuq_complete_job as in 20261128000001, also ending the attempt (with the worker's GPU)
-- before the job finishes, and returning its GPU-seconds.
CREATE FUNCTION gpuq_complete_job(
    p_id uuid, p_from text[], p_kind text, p_outputs jsonb, p_enhanced_prompt text,
    p_worker text, p_attempt integer, p_claimed_at timestamptz,
    p_generation_seconds double precision, p_gpu text)
RETURNS TABLE (id uuid, user_id uuid, job_type text, queue text, status text,
               worker_id text, created_at timestamptz, started_at timestamptz,
               applied boolean, gpu_seconds double precision)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    j jobs%ROWTYPE;
    ok boolean;
    secs double precision;
BEGIN
    SELECT * INTO j FROM jobs WHERE jobs.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ok := j.status = ANY (p_from);
    IF ok THEN
        secs := gpuq_finish_attempt(j, GREATEST(p_attempt, 1), 'completed', p_worker, p_gpu,
                                    p_claimed_at);
        PERFORM 1 FROM gpuq_complete_job(p_id, p_from, p_kind, p_outputs, p_enhanced_prompt,
                                         p_worker, p_attempt, p_claimed_at,
                                         p_generation_seconds);
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok, secs;
END;
$$;
