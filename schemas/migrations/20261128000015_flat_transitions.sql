-- The callback transitions in one function each (issue #21). `gpuq_start_job` and
-- `gpuq_complete_job` with metering (20261128000006) called their earlier versions for the
-- job update, which locked and read the same row again and returned it through a
-- materialized set (pg_stat_user_functions: about a fifth of each transition's time; the
-- e2e A/B showed no gain beyond noise, +1.5 %). Same statements in the same order, one lock
-- and one read; the earlier versions stay for the older signatures that call them. A
-- completion now also clears `error_code` (added after the completion it called), as it
-- clears `error_message`.

CREATE OR REPLACE FUNCTION gpuq_start_job(
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

CREATE OR REPLACE FUNCTION gpuq_complete_job(
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
            -- A worker that never reported `processing` started when it claimed the job.
            started_at = COALESCE(started_at, LEAST(p_claimed_at, now()), now()),
            completed_at = now(),
            updated_at = now(),
            enhanced_prompt = COALESCE(p_enhanced_prompt, enhanced_prompt),
            generation_seconds = COALESCE(p_generation_seconds, generation_seconds),
            error_message = NULL,
            -- A retried job that completes keeps no code of its failed attempt.
            error_code = NULL,
            worker_id = COALESCE(p_worker, worker_id),
            attempts = GREATEST(attempts, p_attempt)
        WHERE jobs.id = p_id;
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok, secs;
END;
$$;
