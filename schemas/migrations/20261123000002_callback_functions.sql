-- The callback service's two hot transitions, each one round trip and one transaction
-- (committed when the calling statement returns) instead of BEGIN, SELECT ... FOR UPDATE,
-- the writes and COMMIT as separate round trips.
--
-- Both lock the job row first, exactly as the service's own transactions do, so callbacks
-- for one job still apply one after the other and each sees the previous one's result.
-- The state machine stays in the service: p_from lists the statuses the transition may
-- start from (JobStatus::can_transition in Rust); a job in any other status is left alone.
-- Both return the job's columns as they were when locked (no row: no such job) and
-- whether the transition was applied.

-- `processing`: a worker started (or, after a redelivery, restarted) the job. The first
-- start time is kept; attempts become the reported attempt if higher, or (no attempt
-- reported) one more when the job was queued.
CREATE OR REPLACE FUNCTION gpuq_start_job(
    p_id uuid, p_from text[], p_worker text, p_attempt integer)
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
        UPDATE jobs SET
            status = 'processing',
            started_at = COALESCE(started_at, now()),
            worker_id = COALESCE(p_worker, worker_id),
            attempts = CASE
                WHEN p_attempt IS NOT NULL THEN GREATEST(attempts, p_attempt)
                WHEN j.status = 'queued' THEN attempts + 1
                ELSE attempts
            END,
            updated_at = now()
        WHERE jobs.id = p_id;
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok;
END;
$$;

-- `completed`: the outputs (already normalized and checked by the service) become
-- `images` or `videos` rows (p_kind 'image' or 'video') and the job finishes. A storage
-- path recorded for another job is a unique violation: the whole call fails, nothing is
-- written.
CREATE OR REPLACE FUNCTION gpuq_complete_job(
    p_id uuid, p_from text[], p_kind text, p_outputs jsonb, p_enhanced_prompt text,
    p_worker text, p_attempt integer)
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
        IF p_kind = 'video' THEN
            INSERT INTO videos (job_id, video_index, user_id, bucket, storage_path,
                                thumbnail_path, prompt, seed, width, height, metadata,
                                duration_seconds)
                SELECT p_id, o.idx, j.user_id, o.bucket, o.storage_path, o.thumbnail_path,
                       j.prompt, o.seed, o.width, o.height, o.metadata, o.duration_seconds
                FROM jsonb_to_recordset(p_outputs) AS o(
                    idx integer, bucket text, storage_path text, thumbnail_path text,
                    seed bigint, width integer, height integer, metadata jsonb,
                    duration_seconds double precision)
                ON CONFLICT (job_id, video_index) DO NOTHING;
        ELSE
            INSERT INTO images (job_id, image_index, user_id, bucket, storage_path,
                                thumbnail_path, prompt, seed, width, height, metadata)
                SELECT p_id, o.idx, j.user_id, o.bucket, o.storage_path, o.thumbnail_path,
                       j.prompt, o.seed, o.width, o.height, o.metadata
                FROM jsonb_to_recordset(p_outputs) AS o(
                    idx integer, bucket text, storage_path text, thumbnail_path text,
                    seed bigint, width integer, height integer, metadata jsonb)
                ON CONFLICT (job_id, image_index) DO NOTHING;
        END IF;
        UPDATE jobs SET
            status = 'completed',
            completed_at = now(),
            updated_at = now(),
            enhanced_prompt = COALESCE(p_enhanced_prompt, enhanced_prompt),
            error_message = NULL,
            worker_id = COALESCE(p_worker, worker_id),
            attempts = GREATEST(attempts, p_attempt)
        WHERE jobs.id = p_id;
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok;
END;
$$;
