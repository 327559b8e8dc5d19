-- Credits (docs/adr/0014-credits.md): a balance per tenant and an append-only ledger it is
-- the sum of. A job's price is held at enqueue, in the transaction that records the job;
-- whatever transaction ends the job settles the hold (completed) or releases it (any other
-- end), through the trigger below, so no code path can finish a job and forget its hold.
--
-- Invariants, each enforced by a constraint, not by care:
--   * no overdraft: an account's holds are covered by its balance (credit_accounts_covered);
--   * one open hold per job (credit_holds' key), one close per hold and one settlement per
--     job (the unique indexes on credit_ledger);
--   * the ledger is never rewritten (credit_ledger_append_only);
--   * balance = sum(balance_delta) and held = sum(held_delta) of the tenant's entries:
--     every change of an account writes its entry in the same statement's function; the
--     view credit_violations lists any account or hold where this does not hold.

CREATE TABLE credit_accounts (
    tenant     text PRIMARY KEY CHECK (tenant ~ '^[A-Za-z0-9._:@-]{1,128}$'),
    balance    bigint NOT NULL DEFAULT 0,
    held       bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credit_accounts_covered CHECK (balance >= held)
);

-- balance_delta: what the entry adds to the balance; held_delta: to the amount held.
--   grant       +n, 0         credits given (an admin, or the starting grant)
--   adjustment  ±n, 0         an admin's correction
--   hold        0, +price     a job's price set aside at enqueue (round: the job's nth hold)
--   settle      -charge, -hold  the job completed: its charge (≤ its hold) is taken
--   release     0, -hold      the job ended otherwise: its hold returns
CREATE TABLE credit_ledger (
    id              bigserial PRIMARY KEY,
    tenant          text NOT NULL REFERENCES credit_accounts (tenant),
    kind            text NOT NULL
                    CHECK (kind IN ('grant', 'adjustment', 'hold', 'settle', 'release')),
    job_id          uuid,
    round           integer CHECK (round >= 1),
    balance_delta   bigint NOT NULL,
    held_delta      bigint NOT NULL,
    gpu_seconds     double precision CHECK (gpu_seconds >= 0),
    reason          text CHECK (length(reason) <= 500),
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credit_ledger_shape CHECK (CASE kind
        WHEN 'grant' THEN balance_delta > 0 AND held_delta = 0 AND job_id IS NULL
        WHEN 'adjustment' THEN balance_delta <> 0 AND held_delta = 0 AND job_id IS NULL
        WHEN 'hold' THEN balance_delta = 0 AND held_delta > 0 AND job_id IS NOT NULL
                         AND round IS NOT NULL
        WHEN 'settle' THEN balance_delta <= 0 AND held_delta < 0
                           AND balance_delta >= held_delta
                           AND job_id IS NOT NULL AND round IS NOT NULL
        WHEN 'release' THEN balance_delta = 0 AND held_delta < 0 AND job_id IS NOT NULL
                            AND round IS NOT NULL
    END)
);
CREATE UNIQUE INDEX credit_ledger_one_hold ON credit_ledger (job_id, round)
    WHERE kind = 'hold';
CREATE UNIQUE INDEX credit_ledger_one_close ON credit_ledger (job_id, round)
    WHERE kind IN ('settle', 'release');
CREATE UNIQUE INDEX credit_ledger_one_settle ON credit_ledger (job_id)
    WHERE kind = 'settle';
CREATE UNIQUE INDEX credit_ledger_key ON credit_ledger (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_ledger_tenant_idx ON credit_ledger (tenant, id DESC);

CREATE FUNCTION gpuq_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger is append-only; correct it with an adjustment'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER credit_ledger_append_only
    BEFORE UPDATE OR DELETE ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION gpuq_ledger_append_only();

-- A job's open hold: the amount set aside and how it settles (per_gpu_second NULL: a
-- fixed price, the whole hold; else the measured GPU-seconds × the rate, at most the
-- hold). No foreign key to jobs: the hold must outlive a deleted job long enough for the
-- delete's trigger to release it.
CREATE TABLE credit_holds (
    job_id         uuid PRIMARY KEY,
    tenant         text NOT NULL REFERENCES credit_accounts (tenant),
    round          integer NOT NULL CHECK (round >= 1),
    amount         bigint NOT NULL CHECK (amount > 0),
    per_gpu_second double precision CHECK (per_gpu_second > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The tenant's account, created on first use with p_starting_grant (an entry of its own).
CREATE FUNCTION gpuq_credit_account(p_tenant text, p_starting_grant bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    INSERT INTO credit_accounts (tenant, balance)
        VALUES (p_tenant, GREATEST(COALESCE(p_starting_grant, 0), 0))
        ON CONFLICT (tenant) DO NOTHING;
    IF FOUND AND p_starting_grant > 0 THEN
        INSERT INTO credit_ledger (tenant, kind, balance_delta, held_delta, reason)
            VALUES (p_tenant, 'grant', p_starting_grant, 0, 'starting grant');
    END IF;
END;
$$;

-- Holds p_amount of p_tenant's available credits (balance − held) for job p_job, if it
-- has them. The account's row lock serializes every hold of a tenant: a burst of
-- concurrent enqueues never holds more than the balance. Returns whether it held, and the
-- account as seen (after the hold when it held).
CREATE FUNCTION gpuq_hold_credits(
    p_job uuid, p_tenant text, p_amount bigint, p_per_gpu_second double precision,
    p_starting_grant bigint)
RETURNS TABLE (held_ok boolean, balance bigint, held bigint)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    a credit_accounts%ROWTYPE;
    r integer;
BEGIN
    PERFORM gpuq_credit_account(p_tenant, p_starting_grant);
    UPDATE credit_accounts SET held = held + p_amount, updated_at = now()
        WHERE tenant = p_tenant AND balance - held >= p_amount
        RETURNING * INTO a;
    IF NOT FOUND THEN
        SELECT * INTO a FROM credit_accounts WHERE tenant = p_tenant;
        RETURN QUERY SELECT false, a.balance, a.held;
        RETURN;
    END IF;
    SELECT COALESCE(max(l.round), 0) + 1 INTO r
        FROM credit_ledger l WHERE l.job_id = p_job AND l.kind = 'hold';
    INSERT INTO credit_holds (job_id, tenant, round, amount, per_gpu_second)
        VALUES (p_job, p_tenant, r, p_amount, p_per_gpu_second);
    INSERT INTO credit_ledger (tenant, kind, job_id, round, balance_delta, held_delta)
        VALUES (p_tenant, 'hold', p_job, r, 0, p_amount);
    RETURN QUERY SELECT true, a.balance, a.held;
END;
$$;

-- Closes job p_job's open hold, if it has one: settles it when p_completed (a fixed price
-- takes the hold; a metered one the completed attempt's GPU-seconds × its rate, rounded
-- up, at most the hold), else releases it. p_reason says why, for the ledger.
CREATE FUNCTION gpuq_close_hold(p_job uuid, p_completed boolean, p_reason text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    h credit_holds%ROWTYPE;
    secs double precision;
    charge bigint := 0;
BEGIN
    DELETE FROM credit_holds WHERE job_id = p_job RETURNING * INTO h;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_completed THEN
        charge := h.amount;
        IF h.per_gpu_second IS NOT NULL THEN
            SELECT a.gpu_seconds INTO secs FROM job_attempts a
                WHERE a.job_id = p_job AND a.outcome = 'completed'
                ORDER BY a.attempt DESC LIMIT 1;
            -- No measured attempt (none can be missing: completion records one): the hold.
            IF secs IS NOT NULL THEN
                charge := LEAST(h.amount, ceil(secs * h.per_gpu_second)::bigint);
            END IF;
        END IF;
    END IF;
    UPDATE credit_accounts
        SET balance = balance - charge, held = held - h.amount, updated_at = now()
        WHERE tenant = h.tenant;
    INSERT INTO credit_ledger (tenant, kind, job_id, round, balance_delta, held_delta,
                               gpu_seconds, reason)
        VALUES (h.tenant, CASE WHEN p_completed THEN 'settle' ELSE 'release' END, p_job,
                h.round, -charge, -h.amount, secs, p_reason);
END;
$$;

CREATE FUNCTION gpuq_jobs_close_hold() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM gpuq_close_hold(OLD.id, false, 'not queued');
        RETURN OLD;
    END IF;
    PERFORM gpuq_close_hold(NEW.id, NEW.status = 'completed',
                            COALESCE(NEW.error_code, NEW.status));
    RETURN NULL;
END;
$$;

-- Every transition that ends a job closes its hold, in that transition's transaction.
CREATE TRIGGER jobs_close_hold
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (OLD.status IN ('queued', 'processing')
          AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION gpuq_jobs_close_hold();

-- A job deleted before it reached the queue (queue full, deadline unreachable) releases.
CREATE TRIGGER jobs_release_hold_on_delete
    BEFORE DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION gpuq_jobs_close_hold();

-- gpuq_record_jobs as in 20261127000001, also holding each job's price (row field `price`;
-- absent or null: no hold, credits not enforced) from its `tenant`'s account, created with
-- p_starting_grant. A job whose tenant is short is not written: outcome
-- 'insufficient_credits' with the account's balance and held amount.
--
-- Lock order, the same in every transaction that touches accounts, so none waits for
-- another in a cycle: job rows first (a transition locks its one job, the reconciler its
-- page), then accounts in tenant order (all of a transaction's at once where it has
-- several), then users' advisory locks in user order. This function takes no job row.
-- A tenant's account is created, with its starting grant, by its first priced request,
-- whatever then becomes of that request.
CREATE FUNCTION gpuq_record_jobs(p_rows jsonb, p_max_active bigint, p_starting_grant bigint)
RETURNS TABLE (recorded_id uuid, outcome text, active_jobs bigint, balance bigint,
               held bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r record;
    claimed integer;
    ok boolean;
BEGIN
    PERFORM gpuq_credit_account(t.tenant, p_starting_grant)
        FROM (SELECT DISTINCT x.tenant FROM jsonb_to_recordset(p_rows) AS x(tenant text, price bigint)
              WHERE x.price > 0 ORDER BY x.tenant) t;
    PERFORM 1 FROM credit_accounts a
        WHERE a.tenant IN (SELECT x.tenant FROM jsonb_to_recordset(p_rows) AS x(tenant text, price bigint)
                           WHERE x.price > 0)
        ORDER BY a.tenant FOR UPDATE;
    FOR r IN
        SELECT * FROM jsonb_to_recordset(p_rows) AS x(
            ord integer, id uuid, user_id uuid, job_type text, queue text, prompt text,
            metadata jsonb, config jsonb, project_id text, video_id text, image_id text,
            credits integer, max_attempts integer, created_at timestamptz, envelope jsonb,
            idempotency_key text, request_hash text, tenant text, price bigint,
            per_gpu_second double precision)
        ORDER BY x.user_id, x.ord
    LOOP
        recorded_id := r.id;
        balance := NULL;
        held := NULL;
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
        IF r.price > 0 THEN
            SELECT h.held_ok, h.balance, h.held INTO ok, balance, held
                FROM gpuq_hold_credits(r.id, r.tenant, r.price, r.per_gpu_second,
                                       p_starting_grant) h;
            IF NOT ok THEN
                -- Its idempotency key goes with it (ON DELETE CASCADE).
                DELETE FROM jobs j WHERE j.id = r.id;
                outcome := 'insufficient_credits';
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        outcome := 'inserted';
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Every way the ledger and the state it explains could disagree; empty when all is well.
--   balance: an account's balance or held amount is not the sum of its entries;
--   hold:    a job's open hold (credit_holds) is not what its entries leave open;
--   finished_with_hold: a finished (or deleted) job still holds credits;
--   completed_unsettled: a completed job that was held was never charged.
CREATE VIEW credit_violations AS
SELECT 'balance' AS kind, a.tenant, NULL::uuid AS job_id,
       format('balance %s held %s; ledger %s and %s', a.balance, a.held,
              COALESCE(l.b, 0), COALESCE(l.h, 0)) AS detail
FROM credit_accounts a
LEFT JOIN (SELECT tenant, sum(balance_delta) AS b, sum(held_delta) AS h
           FROM credit_ledger GROUP BY tenant) l USING (tenant)
WHERE a.balance <> COALESCE(l.b, 0) OR a.held <> COALESCE(l.h, 0)
UNION ALL
SELECT 'hold', COALESCE(h.tenant, l.tenant), COALESCE(h.job_id, l.job_id),
       format('open hold %s; ledger leaves %s open', COALESCE(h.amount, 0),
              COALESCE(l.open, 0))
FROM credit_holds h
FULL JOIN (SELECT job_id, min(tenant) AS tenant, sum(held_delta) AS open
           FROM credit_ledger WHERE job_id IS NOT NULL GROUP BY job_id) l USING (job_id)
WHERE COALESCE(h.amount, 0) <> COALESCE(l.open, 0)
UNION ALL
SELECT 'finished_with_hold', h.tenant, h.job_id,
       format('job is %s', COALESCE(j.status, 'deleted'))
FROM credit_holds h LEFT JOIN jobs j ON j.id = h.job_id
WHERE j.id IS NULL OR j.status IN ('completed', 'failed', 'cancelled')
UNION ALL
SELECT 'completed_unsettled', l.tenant, l.job_id, 'completed, held, never settled'
FROM credit_ledger l JOIN jobs j ON j.id = l.job_id
WHERE l.kind = 'hold' AND j.status = 'completed'
  AND NOT EXISTS (SELECT 1 FROM credit_ledger s WHERE s.job_id = l.job_id AND s.kind = 'settle')
GROUP BY l.tenant, l.job_id;
