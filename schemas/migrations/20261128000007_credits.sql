-- Credits (docs/adr/0014-credits.md): a balance per tenant and an append-only ledger it is
-- the sum of. A job's price is held at enqueue, in the transaction that records the job;
-- whatever transaction ends the job settles the hold (completed) or releases it (any other
-- end), through the trigger below, so no code path can finish a job and forget its hold.
--
-- Invariants, each enforced by a constraint, not by care:
--   * no overdraft: an account's holds are covered by its balance (credit_accounts_covered);
--   * one hold per job and round, one close per hold and one settlement per job (the unique
--     indexes on credit_ledger); a job's open hold is its latest hold with no close;
--   * the ledger is never rewritten (credit_ledger_append_only);
--   * balance = sum(balance_delta) and held = sum(held_delta) of the tenant's entries:
--     every change of an account writes its entry in the same statement's function; the
--     view credit_violations lists any account or hold where this does not hold.

-- A tenant name, checked where a value is written to a column of this type (a domain's
-- check, unlike a table's, is not re-run when another column of the row changes: accounts
-- are updated by every batch of enqueues, and the pattern costs more than the update).
CREATE DOMAIN gpuq_tenant AS text CHECK (VALUE ~ '^[A-Za-z0-9._:@-]{1,128}$');

CREATE TABLE credit_accounts (
    tenant     gpuq_tenant PRIMARY KEY,
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
    id              bigserial,
    -- No foreign key: every entry is written by a function that has just locked or created
    -- the account, and a per-row key check costs each hold as much as its index entries
    -- (credit_violations reports an entry without an account).
    tenant          text NOT NULL,
    kind            text NOT NULL
                    CHECK (kind IN ('grant', 'adjustment', 'hold', 'settle', 'release')),
    job_id          uuid,
    round           integer CHECK (round >= 1),
    balance_delta   bigint NOT NULL,
    held_delta      bigint NOT NULL,
    -- A hold's metered rate (NULL: a fixed price, settled at the whole hold).
    per_gpu_second  double precision CHECK (per_gpu_second > 0),
    -- A metered settlement's measured GPU-seconds.
    gpu_seconds     double precision CHECK (gpu_seconds >= 0),
    reason          text CHECK (length(reason) <= 500),
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- A tenant's entries, newest first, straight from the key: one index fewer to write
    -- with every hold.
    PRIMARY KEY (tenant, id),
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
    END),
    CHECK (per_gpu_second IS NULL OR kind = 'hold')
);
CREATE UNIQUE INDEX credit_ledger_one_hold ON credit_ledger (job_id, round)
    WHERE kind = 'hold';
CREATE UNIQUE INDEX credit_ledger_one_close ON credit_ledger (job_id, round)
    WHERE kind IN ('settle', 'release');
CREATE UNIQUE INDEX credit_ledger_one_settle ON credit_ledger (job_id)
    WHERE kind = 'settle';
CREATE UNIQUE INDEX credit_ledger_key ON credit_ledger (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

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

-- A job's open hold: its latest hold, if no settlement or release closed it.
CREATE FUNCTION gpuq_open_hold(p_job uuid) RETURNS credit_ledger
LANGUAGE sql STABLE
AS $$
    SELECT h.* FROM credit_ledger h
    WHERE h.job_id = p_job AND h.kind = 'hold'
      AND NOT EXISTS (SELECT 1 FROM credit_ledger c
                      WHERE c.job_id = p_job AND c.round = h.round
                        AND c.kind IN ('settle', 'release'))
    ORDER BY h.round DESC LIMIT 1
$$;

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
    IF (gpuq_open_hold(p_job)).job_id IS NOT NULL THEN
        RAISE EXCEPTION 'job % already holds credits', p_job USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE credit_accounts SET held = held + p_amount, updated_at = now()
        WHERE tenant = p_tenant AND balance - held >= p_amount
        RETURNING * INTO a;
    IF NOT FOUND THEN
        SELECT * INTO a FROM credit_accounts WHERE tenant = p_tenant;
        RETURN QUERY SELECT false, a.balance, a.held;
        RETURN;
    END IF;
    -- A round is the job's life (1, and one more per admin requeue): one hold per life.
    SELECT j.life INTO r FROM jobs j WHERE j.id = p_job;
    INSERT INTO credit_ledger (tenant, kind, job_id, round, balance_delta, held_delta,
                               per_gpu_second)
        VALUES (p_tenant, 'hold', p_job, r, 0, p_amount, p_per_gpu_second);
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
    h credit_ledger%ROWTYPE;
    secs double precision;
    charge bigint := 0;
BEGIN
    h := gpuq_open_hold(p_job);
    IF h.job_id IS NULL THEN
        RETURN;
    END IF;
    IF p_completed THEN
        charge := h.held_delta;
        IF h.per_gpu_second IS NOT NULL THEN
            SELECT a.gpu_seconds INTO secs FROM job_attempts a
                WHERE a.job_id = p_job AND a.outcome = 'completed'
                ORDER BY a.life DESC, a.attempt DESC LIMIT 1;
            -- No measured attempt (completion records one, so only a report from before
            -- metering existed): the hold.
            IF secs IS NOT NULL THEN
                charge := LEAST(h.held_delta, ceil(secs * h.per_gpu_second)::bigint);
            END IF;
        END IF;
    END IF;
    UPDATE credit_accounts
        SET balance = balance - charge, held = held - h.held_delta, updated_at = now()
        WHERE tenant = h.tenant;
    INSERT INTO credit_ledger (tenant, kind, job_id, round, balance_delta, held_delta,
                               gpu_seconds, reason)
        VALUES (h.tenant, CASE WHEN p_completed THEN 'settle' ELSE 'release' END, p_job,
                h.round, -charge, -h.held_delta, secs, p_reason);
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
-- 'insufficient_credits' with the account's balance and what it held at that point.
--
-- The batch's holds are decided row by row, in the order of the loop, against the
-- accounts as locked at the start, and written at the end in two statements (one account
-- update per tenant, one ledger entry per job): per row, a hold costs a lookup, not a
-- function call and a row update.
--
-- Lock order, the same in every transaction that touches accounts, so none waits for
-- another in a cycle: job rows first (a transition locks its one job, the reconciler its
-- page), then accounts in tenant order (all of a transaction's at once where it has
-- several), then users' advisory locks in user order. This function takes no job row.
-- A tenant's account is created, with its starting grant, before its first priced request
-- is recorded (the dispatcher calls gpuq_credit_account), whatever then becomes of that
-- request.
CREATE FUNCTION gpuq_record_jobs(p_rows jsonb, p_max_active bigint, p_starting_grant bigint)
RETURNS TABLE (recorded_id uuid, outcome text, active_jobs bigint, balance bigint,
               held bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r record;
    claimed integer;
    -- The batch's priced tenants, in order, with their accounts as locked: balance, and
    -- what is left to hold as the batch holds.
    names text[];
    balances bigint[];
    available bigint[];
    before bigint[];
    -- What was already added to each account's held amount before the loop.
    reserved bigint[];
    total bigint;
    i integer;
    names_wanted text[];
    wanted integer;
    h_ids uuid[] := '{}';
    h_tenants text[] := '{}';
    h_prices bigint[] := '{}';
    h_rates double precision[] := '{}';
BEGIN
    SELECT array_agg(DISTINCT x.tenant ORDER BY x.tenant), sum(x.price) INTO names, total
        FROM jsonb_to_recordset(p_rows) AS x(tenant text, price bigint) WHERE x.price > 0;
    wanted := cardinality(names);
    names_wanted := names;
    IF wanted = 1 THEN
        -- One tenant (every batch at low load): one statement locks its account, checks it
        -- covers all the batch's jobs and takes their prices; what the loop does not use
        -- (a job refused by a limit or a key) goes back at the end.
        UPDATE credit_accounts ca SET held = ca.held + total, updated_at = now()
            WHERE ca.tenant = names[1] AND ca.balance - ca.held >= total
            RETURNING ARRAY[ca.balance], ARRAY[total], ARRAY[total]
            INTO balances, available, reserved;
    END IF;
    IF names IS NOT NULL AND reserved IS NULL THEN
        -- The accounts, locked in tenant order (found by key, never by a scan of every
        -- account). The dispatcher creates a tenant's account before its first priced
        -- job reaches a batch, so all are found.
        SELECT array_agg(a.tenant ORDER BY a.tenant), array_agg(a.balance ORDER BY a.tenant),
               array_agg(a.balance - a.held ORDER BY a.tenant)
            INTO names, balances, available
            FROM (SELECT ca.tenant, ca.balance, ca.held FROM credit_accounts ca
                  WHERE ca.tenant = ANY (names) ORDER BY ca.tenant FOR UPDATE) a;
        IF cardinality(names) IS DISTINCT FROM wanted THEN
            IF wanted > 1 THEN
                -- Creating one now could wait for another batch creating it while this one
                -- holds other accounts: a lock cycle. Refuse the batch instead; the
                -- dispatcher then records its jobs one by one (next branch).
                RAISE EXCEPTION 'a tenant of this batch has no credit account yet'
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            -- One tenant, no account, nothing else locked: create it (with the starting
            -- grant) and lock it.
            PERFORM gpuq_credit_account(names_wanted[1], p_starting_grant);
            SELECT ARRAY[ca.tenant], ARRAY[ca.balance], ARRAY[ca.balance - ca.held]
                INTO names, balances, available
                FROM credit_accounts ca WHERE ca.tenant = names_wanted[1] FOR UPDATE;
        END IF;
        reserved := array_fill(0::bigint, ARRAY[wanted]);
    END IF;
    before := available;
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
            i := array_position(names, r.tenant);
            IF i IS NULL THEN
                RAISE EXCEPTION 'no credit account locked for tenant %', r.tenant;
            END IF;
            IF available[i] < r.price THEN
                -- Its idempotency key goes with it (ON DELETE CASCADE).
                DELETE FROM jobs j WHERE j.id = r.id;
                outcome := 'insufficient_credits';
                balance := balances[i];
                held := balances[i] - available[i];
                RETURN NEXT;
                CONTINUE;
            END IF;
            available[i] := available[i] - r.price;
            h_ids := h_ids || r.id;
            h_tenants := h_tenants || r.tenant;
            h_prices := h_prices || r.price;
            h_rates := h_rates || r.per_gpu_second;
        END IF;
        outcome := 'inserted';
        RETURN NEXT;
    END LOOP;
    -- The accounts' held amounts: what each tenant's jobs took from what was available,
    -- less what was reserved up front (found by key, so no plan scans every account). A
    -- one-tenant batch whose jobs were all recorded took exactly its reservation: nothing
    -- to write. (Two statements: as one, with a data-modifying WITH, it measured slower.)
    IF (reserved[1] > 0 AND available[1] > 0) OR (reserved[1] = 0 AND cardinality(h_ids) > 0)
    THEN
        UPDATE credit_accounts a
            SET held = a.held + (before[array_position(names, a.tenant)]
                                 - available[array_position(names, a.tenant)]
                                 - reserved[array_position(names, a.tenant)]),
                updated_at = now()
            WHERE a.tenant = ANY (names)
              AND before[array_position(names, a.tenant)]
                  - available[array_position(names, a.tenant)]
                  <> reserved[array_position(names, a.tenant)];
    END IF;
    IF cardinality(h_ids) > 0 THEN
        -- A job recorded here is new: this is the hold of its first life (round 1).
        INSERT INTO credit_ledger (tenant, kind, job_id, round, balance_delta, held_delta,
                                   per_gpu_second)
            SELECT u.t, 'hold', u.id, 1, 0, u.p, u.rate
            FROM unnest(h_ids, h_tenants, h_prices, h_rates) AS u(id, t, p, rate);
    END IF;
END;
$$;

-- Every way the ledger and the state it explains could disagree; empty when all is well.
--   balance: an account's balance or held amount is not the sum of its entries;
--   no_account: entries of a tenant that has no account;
--   round: a job's round (life) is closed without a hold, or leaves open other than
--          nothing or its whole hold;
--   open_rounds: a job has more than one round open;
--   finished_with_hold: a finished (or deleted) job still holds credits;
--   completed_unsettled: a job completed in a life it held credits for, and was not charged.
CREATE VIEW credit_violations AS
WITH per_round AS (
    SELECT job_id, round, min(tenant) AS tenant,
           sum(held_delta) FILTER (WHERE kind = 'hold') AS hold, sum(held_delta) AS open,
           bool_or(kind = 'settle') AS settled
    FROM credit_ledger WHERE job_id IS NOT NULL GROUP BY job_id, round),
per_job AS (
    SELECT job_id, min(tenant) AS tenant, sum(open) AS open,
           count(*) FILTER (WHERE open > 0) AS open_rounds
    FROM per_round GROUP BY job_id)
SELECT 'balance' AS kind, a.tenant::text AS tenant, NULL::uuid AS job_id,
       format('balance %s held %s; ledger %s and %s', a.balance, a.held,
              COALESCE(l.b, 0), COALESCE(l.h, 0)) AS detail
FROM credit_accounts a
LEFT JOIN (SELECT tenant, sum(balance_delta) AS b, sum(held_delta) AS h
           FROM credit_ledger GROUP BY tenant) l ON l.tenant = a.tenant
WHERE a.balance <> COALESCE(l.b, 0) OR a.held <> COALESCE(l.h, 0)
UNION ALL
SELECT 'no_account', l.tenant, NULL::uuid, format('%s entries', count(*))
FROM credit_ledger l
WHERE NOT EXISTS (SELECT 1 FROM credit_accounts a WHERE a.tenant = l.tenant)
GROUP BY l.tenant
UNION ALL
SELECT 'round', r.tenant, r.job_id,
       format('round %s: held %s, leaves %s open', r.round, r.hold, r.open)
FROM per_round r WHERE r.hold IS NULL OR r.open NOT IN (0, r.hold)
UNION ALL
SELECT 'open_rounds', p.tenant, p.job_id, format('%s rounds open', p.open_rounds)
FROM per_job p WHERE p.open_rounds > 1
UNION ALL
SELECT 'finished_with_hold', p.tenant, p.job_id,
       format('job is %s and holds %s', COALESCE(j.status, 'deleted'), p.open)
FROM per_job p LEFT JOIN jobs j ON j.id = p.job_id
WHERE p.open > 0 AND (j.id IS NULL OR j.status IN ('completed', 'failed', 'cancelled'))
UNION ALL
SELECT 'completed_unsettled', r.tenant, r.job_id, format('completed in life %s, held, never charged', r.round)
FROM per_round r JOIN jobs j ON j.id = r.job_id AND j.life = r.round
WHERE j.status = 'completed' AND r.hold IS NOT NULL AND NOT r.settled;

-- The two-argument form (previous release's replicas, during a rolling deploy) is now this
-- one without prices: one loop to keep right, not two.
CREATE OR REPLACE FUNCTION gpuq_record_jobs(p_rows jsonb, p_max_active bigint)
RETURNS TABLE (recorded_id uuid, outcome text, active_jobs bigint)
LANGUAGE sql VOLATILE
AS $$
    SELECT r.recorded_id, r.outcome, r.active_jobs
    FROM gpuq_record_jobs(p_rows, p_max_active, 0::bigint) r;
$$;
