-- Per-job webhooks (ADR 0016, "Per-job webhooks"): an enqueue may name a URL (its host on
-- the configured allow-list) and the events it wants. Its deliveries go through the same
-- outbox and sender as an endpoint's, with `endpoint_id` null and the URL on the delivery;
-- the sender signs them with the job's tenant's key (derived from the job secret).

CREATE TABLE job_webhooks (
    -- No foreign key: the jobs delete trigger reads this row (a job refused after its
    -- enqueue tells its webhook) before removing it.
    job_id  uuid PRIMARY KEY,
    url     text NOT NULL CHECK (url ~ '^https?://[^\s]+$' AND length(url) <= 2048),
    events  text[] NOT NULL CHECK (
                cardinality(events) BETWEEN 1 AND 6
                AND events <@ ARRAY['queued', 'started', 'progress', 'completed', 'failed', 'cancelled'])
);

ALTER TABLE webhook_deliveries ALTER COLUMN endpoint_id DROP NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN url text;
-- Every row written before holds an endpoint and no URL: no need to scan them.
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_one_target
    CHECK ((endpoint_id IS NULL) = (url IS NOT NULL)) NOT VALID;

-- Where event `p_event` of job `j` goes: every enabled endpoint that wants it (and the
-- job's tenant), and the job's own webhook if it does. One row per target: an endpoint's
-- id, or the job's own URL.
CREATE FUNCTION gpuq_webhook_targets(j jobs, p_event text)
RETURNS TABLE (endpoint_id bigint, url text)
LANGUAGE sql STABLE
AS $$
    SELECT e.id, NULL::text FROM webhook_endpoints e
    WHERE e.enabled AND p_event = ANY (e.events)
      AND (e.tenant IS NULL OR e.tenant = gpuq_job_tenant(j))
    UNION ALL
    SELECT NULL, w.url FROM job_webhooks w
    WHERE w.job_id = j.id AND p_event = ANY (w.events)
$$;

-- Writes one delivery of `p_event` for job `j` to each of its targets; wakes the senders
-- when it wrote any. Returns how many it wrote. The body (a `completed` one reads the
-- outputs) is built once, and only when some target wants the event.
CREATE OR REPLACE FUNCTION gpuq_webhook_enqueue(j jobs, p_event text)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    written integer;
BEGIN
    WITH t AS MATERIALIZED (SELECT * FROM gpuq_webhook_targets(j, p_event)),
         b AS MATERIALIZED (SELECT gpuq_webhook_payload(j, p_event) AS body
                            WHERE EXISTS (SELECT 1 FROM t))
    INSERT INTO webhook_deliveries (endpoint_id, url, job_id, event, payload)
    SELECT t.endpoint_id, t.url, j.id, p_event, b.body FROM t, b;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM gpuq_webhook_wake();
    END IF;
    RETURN written;
END
$$;

CREATE OR REPLACE FUNCTION gpuq_jobs_webhooks() RETURNS trigger
LANGUAGE plpgsql
AS $$
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
    PERFORM gpuq_webhook_enqueue(
        NEW,
        CASE NEW.status WHEN 'processing' THEN 'started' ELSE NEW.status END);
    RETURN NULL;
END
$$;

-- As before (…0008), for the job's own webhook too: a target that may have heard of the
-- job (a delivery of it taken, delivered or failed) is told it failed. Then its row goes.
CREATE OR REPLACE FUNCTION gpuq_jobs_drop_webhooks() RETURNS trigger
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
    INSERT INTO webhook_deliveries (endpoint_id, url, job_id, event, payload)
    SELECT t.endpoint_id, t.url, OLD.id, 'failed', body
    FROM gpuq_webhook_targets(OLD, 'failed') t
    WHERE EXISTS (SELECT 1 FROM webhook_deliveries d
                  WHERE d.job_id = OLD.id
                    AND (d.endpoint_id = t.endpoint_id
                         OR (t.endpoint_id IS NULL AND d.endpoint_id IS NULL)));
    IF FOUND THEN
        PERFORM gpuq_webhook_wake();
    END IF;
    DELETE FROM job_webhooks WHERE job_id = OLD.id;
    RETURN NULL;
END
$$;

-- As before (…0008), for the job's own webhook too.
CREATE OR REPLACE FUNCTION gpuq_webhook_progress(p_job uuid, p_fraction double precision,
                                                 p_message text, p_interval interval)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    j jobs;
    written integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled AND 'progress' = ANY (events))
       AND NOT EXISTS (SELECT 1 FROM job_webhooks WHERE job_id = p_job AND 'progress' = ANY (events)) THEN
        RETURN 0;
    END IF;
    -- The row lock orders two reports of one job, so the checks below see the other's event.
    SELECT * INTO j FROM jobs WHERE id = p_job AND status = 'processing' FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- Each target's last progress event is found by the (job_id, endpoint_id, event,
    -- created_at) index: `=` for an endpoint, IS NULL for the job's own.
    INSERT INTO webhook_deliveries (endpoint_id, url, job_id, event, payload)
    SELECT t.endpoint_id, t.url, j.id, 'progress',
           jsonb_set(body, '{data}', body -> 'data'
                     || jsonb_strip_nulls(jsonb_build_object('progress', p_fraction, 'message', p_message)))
    FROM gpuq_webhook_payload(j, 'progress') AS body,
         gpuq_webhook_targets(j, 'progress') AS t
    WHERE NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.job_id = j.id AND d.endpoint_id = t.endpoint_id AND d.event = 'progress'
            AND d.created_at > now() - p_interval)
      AND NOT (t.endpoint_id IS NULL AND EXISTS (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.job_id = j.id AND d.endpoint_id IS NULL AND d.event = 'progress'
            AND d.created_at > now() - p_interval));
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM gpuq_webhook_wake();
    END IF;
    RETURN written;
END
$$;
