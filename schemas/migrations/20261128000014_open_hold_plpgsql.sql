-- gpuq_open_hold in PL/pgSQL (issue #21). As a LANGUAGE sql function returning one row it
-- was never inlined, and PostgreSQL (before 18) parses and plans such a function's body
-- on every call: every job's end paid that in its `jobs_close_hold` trigger, credits on or
-- off (pg_stat_user_functions: 0.31 ms of a 1.13 ms completion). PL/pgSQL keeps the plan
-- for the session. Same query, same answer: the job's latest hold that no settle or
-- release closed, or NULL.
CREATE OR REPLACE FUNCTION gpuq_open_hold(p_job uuid) RETURNS credit_ledger
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    h credit_ledger%ROWTYPE;
BEGIN
    SELECT o.* INTO h FROM credit_ledger o
    WHERE o.job_id = p_job AND o.kind = 'hold'
      AND NOT EXISTS (SELECT 1 FROM credit_ledger c
                      WHERE c.job_id = p_job AND c.round = o.round
                        AND c.kind IN ('settle', 'release'))
    ORDER BY o.round DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN h;
END;
$$;
