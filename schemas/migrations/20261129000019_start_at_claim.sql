-- A start is the claim's time (issue #21). `processing` used to record `started_at` and open
-- the attempt's metering row at the report's arrival, while a completion whose worker never
-- reported `processing` used the claim's time. The worker holds the GPU from its claim, and
-- a worker may now report `processing` a moment after its handler starts (the Rust SDK's
-- `report_processing_after`: a job that ends sooner reports its result only), so a start is
-- the claim's time wherever the callback service knows it (the fence check reads it from
-- Redis), and the report's arrival only when it does not.

-- `gpuq_start_job` with p_claimed_at (NULL: unknown, now). The five-argument version stays
-- for older callback services during a rolling deploy.
CREATE FUNCTION gpuq_start_job(
    p_id uuid, p_from text[], p_worker text, p_attempt integer, p_gpu text,
    p_claimed_at timestamptz)
RETURNS TABLE (id uuid, user_id uuid, job_type text, queue text, status text,
               worker_id text, created_at timestamptz, started_at timestamptz,
               applied boolean)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    j jobs%ROWTYPE;
    ok boolean;
    started timestamptz;
BEGIN
    SELECT * INTO j FROM jobs WHERE jobs.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Never after now, nor before the job existed (Redis' clock may run behind).
    started := GREATEST(j.created_at, LEAST(COALESCE(p_claimed_at, now()), now()));
    ok := j.status = ANY (p_from);
    IF ok THEN
        UPDATE jobs SET
            status = 'processing',
            started_at = COALESCE(started_at, started),
            worker_id = COALESCE(p_worker, worker_id),
            attempts = CASE
                WHEN p_attempt IS NOT NULL THEN GREATEST(attempts, p_attempt)
                WHEN j.status = 'queued' THEN attempts + 1
                ELSE attempts
            END,
            updated_at = now()
        WHERE jobs.id = p_id;
        -- Without a reported attempt: the next one if the job was waiting, else the one
        -- that runs (a repeated report must not open another).
        PERFORM gpuq_open_attempt(
            j, COALESCE(p_attempt, CASE WHEN j.status = 'queued' THEN j.attempts + 1
                                        ELSE GREATEST(j.attempts, 1) END),
            p_worker, p_gpu, started);
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok;
END;
$$;

-- Starts in batches, as before, with each start's `claimed_at` (absent from the JSON of an
-- older callback service: NULL, now).
CREATE OR REPLACE FUNCTION gpuq_start_jobs(p_jobs jsonb)
RETURNS TABLE (ord integer, id uuid, user_id uuid, job_type text, queue text, status text,
               worker_id text, created_at timestamptz, started_at timestamptz,
               applied boolean)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    item record;
BEGIN
    PERFORM gpuq_lock_batch(p_jobs, false);
    FOR item IN
        SELECT e.n::integer AS n, e.v AS v
        FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS e(v, n)
        ORDER BY (e.v ->> 'id')::uuid, e.n
    LOOP
        RETURN QUERY
            SELECT item.n, s.*
            FROM gpuq_start_job(
                (item.v ->> 'id')::uuid,
                ARRAY(SELECT jsonb_array_elements_text(item.v -> 'from')),
                item.v ->> 'worker',
                (item.v ->> 'attempt')::integer,
                item.v ->> 'gpu',
                (item.v ->> 'claimed_at')::timestamptz) AS s;
    END LOOP;
END;
$$;

-- As before (…0010), and a job that ends from `queued` (its worker reported its result
-- only) was started too: its `started` event is written with its end, so a webhook target
-- hears `started` for every job that ran, as when `processing` was reported. Its
-- `timestamp` is the start (the claim), so a receiver ordering a job's events by it puts it
-- first. Only when this end also records the job's first start (`started_at`, from the
-- worker's report): a job that failed without running (its start deadline passed, the
-- dispatcher found it lost) has none, and a retried job announced its start before.
CREATE OR REPLACE FUNCTION gpuq_jobs_webhooks() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    started jobs;
BEGIN
    -- Nothing to do (the common case) costs a probe of a small table and one of an index.
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)
       AND NOT EXISTS (SELECT 1 FROM job_webhooks WHERE job_id = NEW.id) THEN
        RETURN NULL;
    END IF;
    -- A job its own transaction deleted again (an enqueue refused for a taken key or
    -- short credits) never existed for anyone outside it.
    PERFORM 1 FROM jobs WHERE id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'queued' AND NEW.status IN ('completed', 'failed')
       AND OLD.started_at IS NULL AND NEW.started_at IS NOT NULL THEN
        -- The job as it was while it ran.
        started := NEW;
        started.status := 'processing';
        started.completed_at := NULL;
        started.error_code := NULL;
        started.error_message := NULL;
        started.enhanced_prompt := NULL;
        IF gpuq_webhook_enqueue(started, 'started') > 0 THEN
            UPDATE webhook_deliveries d
                SET payload = jsonb_set(d.payload, '{timestamp}', to_jsonb(to_char(
                    NEW.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
                WHERE d.job_id = NEW.id AND d.event = 'started' AND d.created_at = now();
        END IF;
    END IF;
    PERFORM gpuq_webhook_enqueue(
        NEW,
        CASE NEW.status WHEN 'processing' THEN 'started' ELSE NEW.status END);
    RETURN NULL;
END
$$;
