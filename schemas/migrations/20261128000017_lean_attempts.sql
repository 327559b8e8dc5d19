-- Metering in fewer row versions (issue #21). `pg_stat_user_functions` during `gpuq-bench
-- e2e` put the attempt rows at about two fifths of the callback transitions' time: each
-- completion wrote its attempt three times (the start's INSERT, the completion's
-- `ON CONFLICT DO UPDATE` that re-opened it to fill the GPU name, then the UPDATE that
-- ended it), and each of those versions went into every index of `job_attempts`; every
-- open also scanned for earlier attempts to mark lost, though a job's first attempt has
-- none.
--
-- Same results, same rows: an attempt is opened and ended each in one statement, and
-- earlier attempts are looked for only when there can be any (a later attempt or life).

-- Opens attempt p_attempt of job j's life (a replayed report keeps the first start).
-- Attempts before it that never reported their end were lost.
CREATE OR REPLACE FUNCTION gpuq_open_attempt(
    j jobs, p_attempt integer, p_worker text, p_gpu text, p_started timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM gpuq_lose_earlier_attempts(j, p_attempt);
    INSERT INTO job_attempts (job_id, life, attempt, user_id, tenant, job_type, worker_id,
                              gpu_name, started_at)
        VALUES (j.id, j.life, p_attempt, j.user_id, gpuq_job_tenant(j), j.job_type, p_worker,
                p_gpu, LEAST(COALESCE(p_started, now()), now()))
        ON CONFLICT (job_id, life, attempt) DO UPDATE
            SET gpu_name = COALESCE(job_attempts.gpu_name, EXCLUDED.gpu_name)
            WHERE job_attempts.finished_at IS NULL
              -- A repeated report changes nothing: no new row version.
              AND job_attempts.gpu_name IS NULL AND EXCLUDED.gpu_name IS NOT NULL;
END;
$$;

-- Marks the attempts of j's life before p_attempt, and of its earlier lives, that never
-- reported their end as lost. Attempt 1 of life 1 has none before it: nothing is read.
CREATE FUNCTION gpuq_lose_earlier_attempts(j jobs, p_attempt integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_attempt > 1 OR j.life > 1 THEN
        UPDATE job_attempts SET finished_at = GREATEST(now(), started_at), outcome = 'lost'
            WHERE job_id = j.id AND (life, attempt) < (j.life, p_attempt)
              AND finished_at IS NULL;
    END IF;
END;
$$;

-- Ends attempt p_attempt of job j with p_outcome (opening it first if its worker never
-- reported `processing`: it started at p_started, its claim, or now). An attempt taken
-- for lost (its lease ran out, the job was requeued) whose worker reports its end after
-- all ends as reported. Returns the attempt's GPU-seconds, or NULL if it had already
-- ended (a replayed report).
CREATE OR REPLACE FUNCTION gpuq_finish_attempt(
    j jobs, p_attempt integer, p_outcome text, p_worker text, p_gpu text,
    p_started timestamptz)
RETURNS double precision
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    secs double precision;
BEGIN
    PERFORM gpuq_lose_earlier_attempts(j, p_attempt);
    INSERT INTO job_attempts AS a (job_id, life, attempt, user_id, tenant, job_type,
                                   worker_id, gpu_name, started_at, finished_at, outcome)
        VALUES (j.id, j.life, p_attempt, j.user_id, gpuq_job_tenant(j), j.job_type, p_worker,
                p_gpu, LEAST(COALESCE(p_started, now()), now()), now(), p_outcome)
        ON CONFLICT (job_id, life, attempt) DO UPDATE
            SET finished_at = GREATEST(now(), a.started_at),
                outcome = EXCLUDED.outcome,
                gpu_name = CASE WHEN a.finished_at IS NULL
                                THEN COALESCE(a.gpu_name, EXCLUDED.gpu_name)
                                ELSE a.gpu_name END
            WHERE a.finished_at IS NULL OR a.outcome = 'lost'
        RETURNING a.gpu_seconds INTO secs;
    RETURN secs;
END;
$$;
