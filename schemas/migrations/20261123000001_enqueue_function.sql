-- Records an enqueued job in one round trip: called as a single statement, it runs in its
-- own transaction (committed when it returns), takes the user's advisory lock, counts the
-- user's unfinished jobs, inserts the row and claims the idempotency key.
--
-- A plain SQL statement cannot do this: its one snapshot is taken before the lock is
-- granted, so two concurrent enqueues could both count N - 1 and both insert. PL/pgSQL
-- takes a fresh snapshot for every statement of a VOLATILE function, so the count that
-- follows the lock sees every job committed by whoever held it before.
--
-- Returns 'inserted', 'too_many_active' (nothing written) or 'key_taken' (another request
-- holds the idempotency key within 24 h; nothing written), with the unfinished-job count
-- seen under the lock.
CREATE OR REPLACE FUNCTION gpuq_record_job(
    p_id uuid,
    p_user_id uuid,
    p_job_type text,
    p_queue text,
    p_prompt text,
    p_metadata jsonb,
    p_config jsonb,
    p_project_id text,
    p_video_id text,
    p_image_id text,
    p_credits integer,
    p_max_attempts integer,
    p_created_at timestamptz,
    p_envelope jsonb,
    p_idempotency_key text,
    p_max_active bigint,
    OUT outcome text,
    OUT active bigint
)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    claimed integer;
BEGIN
    -- The same lock key the dispatcher used before this function existed, so replicas of
    -- either version exclude each other during a rolling upgrade.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user_id::text, 7));
    SELECT count(*) INTO active FROM jobs
        WHERE user_id = p_user_id AND status IN ('queued', 'processing');
    IF active >= p_max_active THEN
        outcome := 'too_many_active';
        RETURN;
    END IF;
    INSERT INTO jobs (id, user_id, job_type, queue, status, prompt, metadata, config, project_id,
                      video_id, image_id, credits, max_attempts, created_at, envelope)
        VALUES (p_id, p_user_id, p_job_type, p_queue, 'queued', p_prompt, p_metadata, p_config,
                p_project_id, p_video_id, p_image_id, p_credits, p_max_attempts, p_created_at,
                p_envelope);
    IF p_idempotency_key IS NOT NULL THEN
        -- An expired key is replaced; a live one is kept and reported as taken.
        INSERT INTO idempotency_keys (user_id, key, job_id, response)
            VALUES (p_user_id, p_idempotency_key, p_id, '{}'::jsonb)
            ON CONFLICT (user_id, key) DO UPDATE
                SET job_id = EXCLUDED.job_id, response = EXCLUDED.response, created_at = now()
                WHERE idempotency_keys.created_at <= now() - interval '24 hours';
        GET DIAGNOSTICS claimed = ROW_COUNT;
        IF claimed = 0 THEN
            -- Never visible: this transaction has not committed.
            DELETE FROM jobs WHERE id = p_id;
            outcome := 'key_taken';
            RETURN;
        END IF;
    END IF;
    outcome := 'inserted';
END;
$$;
