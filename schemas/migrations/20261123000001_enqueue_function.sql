-- Records a batch of enqueued jobs in one round trip and one transaction (committed when
-- the calling statement returns). For each job, in user order: take the user's advisory
-- lock, count the user's unfinished jobs, insert the row and claim its idempotency key.
-- The dispatcher sends whatever requests arrived while its previous batch was being
-- written, so one commit (one WAL flush) serves many requests.
--
-- A plain SQL statement cannot do this: its one snapshot is taken before the lock is
-- granted, so two concurrent enqueues could both count N - 1 and both insert. PL/pgSQL
-- takes a fresh snapshot for every statement of a VOLATILE function, so the count that
-- follows the lock sees every job committed by whoever held it before, and (same
-- transaction) every job of the same user earlier in this batch.
--
-- Rows are locked in user_id order, so two batches never wait for each other in a cycle.
--
-- p_rows: a JSON array of objects with the columns below (ord: the row's position in the
-- batch). Returns one row per job: outcome 'inserted', 'too_many_active' (nothing written
-- for it) or 'key_taken' (another request holds the idempotency key within 24 h; nothing
-- written for it), with the unfinished-job count seen under the lock.
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
            idempotency_key text)
        ORDER BY x.user_id, x.ord
    LOOP
        recorded_id := r.id;
        -- The same lock key the dispatcher used before this function existed, so replicas
        -- of either version exclude each other during a rolling upgrade.
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
            INSERT INTO idempotency_keys AS k (user_id, key, job_id, response)
                VALUES (r.user_id, r.idempotency_key, r.id, '{}'::jsonb)
                ON CONFLICT (user_id, key) DO UPDATE
                    SET job_id = EXCLUDED.job_id, response = EXCLUDED.response,
                        created_at = now()
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
