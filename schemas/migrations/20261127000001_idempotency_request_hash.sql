-- An Idempotency-Key names one request: the SHA-256 of its body is kept with the key, and
-- the same key with another body is refused (422 idempotency_key_reused) instead of
-- silently answering with the first job. Keys claimed before this column existed have no
-- hash and keep answering as before.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS request_hash text;

-- gpuq_record_jobs as in 20261123000001, now also storing the request's hash.
CREATE OR REPLACE FUNCTION gpuq_record_jobs(p_rows jsonb, p_max_active bigint)
RETURNS TABLE (recorded_id uuid, outcome text, active_jobs bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r record;
    claimed integer;
BEGIN
    FOR r IN
        SELECT * FROM jsonb_to_recordset(p_rows) AS x(
            ord integer, id uuid, user_id uuid, job_type text, queue text, prompt text,
            metadata jsonb, config jsonb, project_id text, video_id text, image_id text,
            credits integer, max_attempts integer, created_at timestamptz, envelope jsonb,
            idempotency_key text, request_hash text)
        ORDER BY x.user_id, x.ord
    LOOP
        recorded_id := r.id;
        PERFORM pg_advisory_xact_lock(hashtextextended(r.user_id::text, 7));
        SELECT count(*) INTO active_jobs FROM jobs j
            WHERE j.user_id = r.user_id AND j.status IN ('queued', 'processing');
        IF active_jobs >= p_max_active THEN
            outcome := 'too_many_active';
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO jobs (id, user_id, job_type, queue, status, prompt, metadata, config,
                          project_id, video_id, image_id, credits, max_attempts, created_at,
                          envelope)
            VALUES (r.id, r.user_id, r.job_type, r.queue, 'queued', r.prompt, r.metadata,
                    r.config, r.project_id, r.video_id, r.image_id, r.credits,
                    r.max_attempts, r.created_at, r.envelope);
        IF r.idempotency_key IS NOT NULL THEN
            -- An expired key is replaced; a live one is kept and reported as taken.
            INSERT INTO idempotency_keys AS k (user_id, key, job_id, response, request_hash)
                VALUES (r.user_id, r.idempotency_key, r.id, '{}'::jsonb, r.request_hash)
                ON CONFLICT (user_id, key) DO UPDATE
                    SET job_id = EXCLUDED.job_id, response = EXCLUDED.response,
                        request_hash = EXCLUDED.request_hash, created_at = now()
                    WHERE k.created_at <= now() - interval '24 hours';
            GET DIAGNOSTICS claimed = ROW_COUNT;
            IF claimed = 0 THEN
                -- Never visible: this transaction has not committed.
                DELETE FROM jobs j WHERE j.id = r.id;
                outcome := 'key_taken';
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        outcome := 'inserted';
        RETURN NEXT;
    END LOOP;
END;
$$;
