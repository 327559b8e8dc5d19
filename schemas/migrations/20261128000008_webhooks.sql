-- Webhooks (ADR 0016): endpoints an app registers, and a durable outbox of deliveries.
--
-- A delivery is written by a trigger on `jobs`, in the very transaction that changes the
-- job's status. Whichever service commits the change (the dispatcher's enqueue, cancel and
-- reconciler; the callback service's start and finish), the event is in the outbox when the
-- change is, and is lost with it only if the change is. The dispatcher's sender posts what
-- is due, signed per Standard Webhooks, and retries with backoff.

CREATE TABLE webhook_endpoints (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL CHECK (url ~ '^https?://[^\s]+$' AND length(url) <= 2048),
    -- `whsec_` + base64 of the key, as Standard Webhooks libraries take it.
    secret          text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]{16,}$'),
    events          text[] NOT NULL CHECK (
                        cardinality(events) BETWEEN 1 AND 6
                        AND events <@ ARRAY['queued', 'started', 'progress', 'completed', 'failed', 'cancelled']),
    -- Only this tenant's jobs; null: every job.
    tenant          gpuq_tenant,
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    -- Registered by the dispatcher's configuration (`webhooks.endpoints`), which it
    -- applies at start-up; one per URL.
    from_config     boolean NOT NULL DEFAULT false,
    -- Removed by an admin. The row stays (disabled) so that a job's transaction writing a
    -- delivery for it at that moment never fails on the foreign key.
    deleted_at      timestamptz,
    CHECK (deleted_at IS NULL OR NOT enabled),
    -- The first failed attempt since the last delivered one; an endpoint failing for the
    -- configured time (a day) is disabled.
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX webhook_endpoints_configured ON webhook_endpoints (url)
    WHERE from_config AND deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    -- The `webhook-id`: the same on every attempt, so a receiver drops a repeat.
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id     bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    job_id          uuid NOT NULL,
    event           text NOT NULL,
    -- The body, fixed when the event happened: a later change of the job does not rewrite it.
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Attempts since `retry_from`: the backoff's step (a replay starts it afresh).
    round_attempts  integer NOT NULL DEFAULT 0 CHECK (round_attempts >= 0),
    -- When a sender may take it next. A sender that takes it moves this past its own
    -- timeout first, so a sender that dies mid-post leaves it to another after that.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Retries go on until this plus the configured time (25 h): the event's time, or when
    -- an admin replayed the delivery.
    retry_from      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status, created_at DESC);
-- Progress throttling looks up a job's last progress event per endpoint.
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, endpoint_id, event, created_at DESC);

-- The delivery log: one row per attempt.
CREATE TABLE webhook_attempts (
    delivery_id     uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt         integer NOT NULL CHECK (attempt >= 1),
    at              timestamptz NOT NULL DEFAULT now(),
    status_code     integer,
    error           text,
    latency_ms      integer NOT NULL CHECK (latency_ms >= 0),
    PRIMARY KEY (delivery_id, attempt)
);

-- The body of event `p_event` of job `j`, Standard Webhooks' shape: type, timestamp, data.
-- Outputs are read when the transaction commits (the trigger is deferred), so a
-- `completed` event lists the rows the same transaction wrote.
CREATE FUNCTION gpuq_webhook_payload(j jobs, p_event text) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
        'type', 'job.' || p_event,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_strip_nulls(jsonb_build_object(
            'id', j.id,
            'jobType', j.job_type,
            'queue', j.queue,
            'status', j.status,
            'userId', j.user_id,
            'tenant', gpuq_job_tenant(j),
            'attempts', j.attempts,
            'createdAt', j.created_at,
            'startedAt', j.started_at,
            'completedAt', j.completed_at,
            'errorCode', j.error_code,
            'errorMessage', j.error_message,
            'enhancedPrompt', j.enhanced_prompt,
            'projectId', j.project_id,
            'videoId', j.video_id,
            'imageId', j.image_id,
            'outputs', CASE WHEN p_event = 'completed' THEN (
                SELECT coalesce(jsonb_agg(o ORDER BY o ->> 'kind', (o ->> 'index')::int), '[]'::jsonb)
                FROM (
                    SELECT jsonb_strip_nulls(jsonb_build_object(
                        'kind', 'image', 'index', i.image_index, 'bucket', i.bucket,
                        'path', i.storage_path, 'thumbnailPath', i.thumbnail_path,
                        'seed', i.seed, 'width', i.width, 'height', i.height)) AS o
                    FROM images i WHERE i.job_id = j.id
                    UNION ALL
                    SELECT jsonb_strip_nulls(jsonb_build_object(
                        'kind', 'video', 'index', v.video_index, 'bucket', v.bucket,
                        'path', v.storage_path, 'thumbnailPath', v.thumbnail_path,
                        'seed', v.seed, 'width', v.width, 'height', v.height,
                        'durationSeconds', v.duration_seconds)) AS o
                    FROM videos v WHERE v.job_id = j.id
                ) outputs) END
        ))
    )
$$;

-- Wakes the senders (they LISTEN on this channel; a poll finds what a lost wake-up left).
CREATE FUNCTION gpuq_webhook_wake() RETURNS void
LANGUAGE sql
AS $$ SELECT pg_notify('gpuq_webhooks', '') $$;

-- Writes one delivery of `p_event` for job `j` to every enabled endpoint that wants it;
-- wakes the senders when it wrote any. Returns how many it wrote.
CREATE FUNCTION gpuq_webhook_enqueue(j jobs, p_event text)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    written integer;
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, job_id, event, payload)
    SELECT e.id, j.id, p_event, gpuq_webhook_payload(j, p_event)
    FROM webhook_endpoints e
    WHERE e.enabled
      AND p_event = ANY (e.events)
      AND (e.tenant IS NULL OR e.tenant = gpuq_job_tenant(j));
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM gpuq_webhook_wake();
    END IF;
    RETURN written;
END
$$;

CREATE FUNCTION gpuq_jobs_webhooks() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Nothing to do (the common case when no app registered an endpoint) costs one probe
    -- of a small table.
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    -- A job its own transaction deleted again (an enqueue refused for a taken key or
    -- short credits) never existed for anyone outside it.
    PERFORM 1 FROM jobs WHERE id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM gpuq_webhook_enqueue(
        NEW,
        CASE NEW.status WHEN 'processing' THEN 'started' ELSE NEW.status END);
    RETURN NULL;
END
$$;

-- Deferred to commit: the event's body sees everything its transaction wrote (a completed
-- job's output rows), and a transaction that rolls back writes no event. An update that
-- does not change the status queues nothing (WHEN is checked when the row changes).
CREATE CONSTRAINT TRIGGER jobs_webhooks_insert
    AFTER INSERT ON jobs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION gpuq_jobs_webhooks();
CREATE CONSTRAINT TRIGGER jobs_webhooks_status
    AFTER UPDATE OF status ON jobs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION gpuq_jobs_webhooks();

-- A job deleted after its enqueue committed (Redis refused it: the queue was full, its
-- deadline unreachable) was never accepted. Its events no sender has taken go with it. An
-- endpoint that may have heard of it (an event delivered, in flight or being retried) gets
-- a final `failed` event, when it wants those, so that no receiver keeps the job queued
-- forever.
CREATE FUNCTION gpuq_jobs_drop_webhooks() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    body jsonb;
BEGIN
    DELETE FROM webhook_deliveries
        WHERE job_id = OLD.id AND status = 'pending' AND attempts = 0
          AND next_attempt_at <= now();
    body := gpuq_webhook_payload(OLD, 'failed');
    body := jsonb_set(body, '{data}', (body -> 'data') || jsonb_build_object(
        'status', 'failed', 'errorCode', 'not_accepted',
        'errorMessage', 'the queue refused the job after it was recorded; it does not exist'));
    INSERT INTO webhook_deliveries (endpoint_id, job_id, event, payload)
    SELECT e.id, OLD.id, 'failed', body
    FROM webhook_endpoints e
    WHERE e.enabled AND 'failed' = ANY (e.events)
      AND EXISTS (SELECT 1 FROM webhook_deliveries d
                  WHERE d.job_id = OLD.id AND d.endpoint_id = e.id);
    IF FOUND THEN
        PERFORM gpuq_webhook_wake();
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_drop_webhooks
    AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION gpuq_jobs_drop_webhooks();

-- A `progress` event for job `p_job`, unless one was written for the same endpoint less
-- than `p_interval` ago (or the job is no longer running). Progress is not a state change
-- in PostgreSQL, so the callback service calls this when a progress report is accepted.
CREATE FUNCTION gpuq_webhook_progress(p_job uuid, p_fraction double precision,
                                      p_message text, p_interval interval)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    j jobs;
    written integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled AND 'progress' = ANY (events)) THEN
        RETURN 0;
    END IF;
    -- The row lock orders two reports of one job, so the check below sees the other's event.
    SELECT * INTO j FROM jobs WHERE id = p_job AND status = 'processing' FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, job_id, event, payload)
    SELECT e.id, j.id, 'progress',
           jsonb_set(body, '{data}', body -> 'data'
                     || jsonb_strip_nulls(jsonb_build_object('progress', p_fraction, 'message', p_message)))
    FROM gpuq_webhook_payload(j, 'progress') AS body,
         webhook_endpoints e
    WHERE e.enabled
      AND 'progress' = ANY (e.events)
      AND (e.tenant IS NULL OR e.tenant = gpuq_job_tenant(j))
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.job_id = j.id AND d.endpoint_id = e.id AND d.event = 'progress'
            AND d.created_at > now() - p_interval);
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM gpuq_webhook_wake();
    END IF;
    RETURN written;
END
$$;
