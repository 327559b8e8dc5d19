-- What legacy workers report that had nowhere to go (../shared/LEGACY.md): the generation
-- time, and a start time for jobs whose worker never reported `processing` (the claim's
-- time, from Redis). gpuq_complete_job gains both as parameters; the 7-parameter form stays
-- as a wrapper, so callback replicas of the previous release keep completing jobs during a
-- rolling deploy (drop it one release later).

ALTER TABLE jobs ADD COLUMN generation_seconds double precision
    CHECK (generation_seconds >= 0);

CREATE FUNCTION gpuq_complete_job(
    p_id uuid, p_from text[], p_kind text, p_outputs jsonb, p_enhanced_prompt text,
    p_worker text, p_attempt integer, p_claimed_at timestamptz,
    p_generation_seconds double precision)
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
            -- A worker that never reported `processing` started when it claimed the job.
            started_at = COALESCE(started_at, LEAST(p_claimed_at, now()), now()),
            completed_at = now(),
            updated_at = now(),
            enhanced_prompt = COALESCE(p_enhanced_prompt, enhanced_prompt),
            generation_seconds = COALESCE(p_generation_seconds, generation_seconds),
            error_message = NULL,
            worker_id = COALESCE(p_worker, worker_id),
            attempts = GREATEST(attempts, p_attempt)
        WHERE jobs.id = p_id;
    END IF;
    RETURN QUERY SELECT j.id, j.user_id, j.job_type, j.queue, j.status, j.worker_id,
                        j.created_at, j.started_at, ok;
END;
$$;

-- The previous release's call, now a wrapper.
CREATE OR REPLACE FUNCTION gpuq_complete_job(
    p_id uuid, p_from text[], p_kind text, p_outputs jsonb, p_enhanced_prompt text,
    p_worker text, p_attempt integer)
RETURNS TABLE (id uuid, user_id uuid, job_type text, queue text, status text,
               worker_id text, created_at timestamptz, started_at timestamptz,
               applied boolean)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM gpuq_complete_job(p_id, p_from, p_kind, p_outputs, p_enhanced_prompt,
                                    p_worker, p_attempt, NULL::timestamptz,
                                    NULL::double precision);
$$;
