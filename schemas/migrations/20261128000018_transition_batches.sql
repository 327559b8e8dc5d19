-- Completions and starts in batches (issue #21): the callback service writes the reports
-- that arrive while earlier ones are being written in one call and one transaction, as
-- the dispatcher writes enqueues, instead of a transaction (and a WAL flush) each.

-- Locks a batch's jobs in id order and, with p_accounts, then the credit accounts of their
-- holds in tenant order, before any of it is written: the order every transaction that
-- touches accounts follows (20261128000007: job rows first, then accounts in tenant order).
-- Job by job instead, a completion's credit trigger would lock its account between two job
-- rows, and two batches, or a batch and a cancel, could each hold what the other waits for.
-- A start takes no account: its batch locks job rows only. A batch of more than one also
-- gives up on a lock held past 250 ms (a failure report holds its row across a Redis
-- call): the caller then writes its reports one by one, and hands a report whose lock is
-- still held back to its own request, which waits for it alone.
CREATE FUNCTION gpuq_lock_batch(p_jobs jsonb, p_accounts boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ids uuid[];
BEGIN
    IF jsonb_array_length(p_jobs) > 1 THEN
        PERFORM set_config('lock_timeout', '250ms', true);
    END IF;
    SELECT array_agg((e ->> 'id')::uuid) INTO ids FROM jsonb_array_elements(p_jobs) AS e;
    PERFORM 1 FROM jobs j WHERE j.id = ANY (ids) ORDER BY j.id FOR UPDATE;
    IF p_accounts THEN
        -- The accounts the completions' holds will settle (a job without a hold has
        -- none to lock).
        PERFORM 1 FROM credit_accounts a
            WHERE a.tenant IN (SELECT l.tenant FROM credit_ledger l
                               WHERE l.job_id = ANY (ids) AND l.kind = 'hold')
            ORDER BY a.tenant FOR UPDATE;
    END IF;
END;
$$;

-- Completions in batches. p_jobs: a JSON array of completions, each the arguments of
-- `gpuq_complete_job` by name ({"id", "from", "kind", "outputs", "enhanced_prompt",
-- "worker", "attempt", "claimed_at", "generation_seconds", "gpu"}). Returns
-- `gpuq_complete_job`'s row for each, tagged with its 1-based place in p_jobs (`ord`); a
-- job that does not exist returns no row.
--
-- Any error rolls the whole batch back: the caller then writes each completion alone, so
-- one bad completion (a storage path another job recorded) costs only itself.
CREATE FUNCTION gpuq_complete_jobs(p_jobs jsonb)
RETURNS TABLE (ord integer, id uuid, user_id uuid, job_type text, queue text, status text,
               worker_id text, created_at timestamptz, started_at timestamptz,
               applied boolean, gpu_seconds double precision)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    item record;
BEGIN
    PERFORM gpuq_lock_batch(p_jobs, true);
    FOR item IN
        SELECT e.n::integer AS n, e.v AS v
        FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS e(v, n)
        ORDER BY (e.v ->> 'id')::uuid, e.n
    LOOP
        RETURN QUERY
            SELECT item.n, c.*
            FROM gpuq_complete_job(
                (item.v ->> 'id')::uuid,
                ARRAY(SELECT jsonb_array_elements_text(item.v -> 'from')),
                item.v ->> 'kind',
                item.v -> 'outputs',
                item.v ->> 'enhanced_prompt',
                item.v ->> 'worker',
                (item.v ->> 'attempt')::integer,
                (item.v ->> 'claimed_at')::timestamptz,
                (item.v ->> 'generation_seconds')::double precision,
                item.v ->> 'gpu') AS c;
    END LOOP;
END;
$$;

-- Starts (`processing` reports) in batches, the same way: p_jobs holds the arguments of
-- `gpuq_start_job` by name ({"id", "from", "worker", "attempt", "gpu"}). Its job rows are
-- locked first, in id order, the same way; a start takes no account.
CREATE FUNCTION gpuq_start_jobs(p_jobs jsonb)
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
                item.v ->> 'gpu') AS s;
    END LOOP;
END;
$$;
