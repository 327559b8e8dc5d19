//! The reconciler's ledger check. Every reconcile period, each account changed since the
//! last pass must still equal the sum of its ledger entries. Every change writes its
//! entry in the same transaction, so a difference is a bug. It is logged and counted in
//! `gpuq_credit_violations`, never "fixed" by guessing. The whole-ledger check, which also
//! covers holds left on finished jobs, is the `credit_violations` view
//! (docs/operations.md §8).
//!
//! **Incremental.** A tenant's entries up to a checkpoint are summed once and remembered,
//! so each pass reads only the entries added since: a pass costs what changed, not the
//! ledger's size. Entries from the last [`SETTLE`] stay after the checkpoint. A transaction
//! that allocated an entry's id is then long committed (or gone), so no entry can appear
//! below the checkpoint later. A transaction older than that would show as a difference: a
//! false alarm, never a missed one.
//!
//! **Sticky.** A tenant found wrong is checked on every pass until it is right, so the
//! gauge does not clear itself when the account stops changing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// How old an entry must be before it joins a checkpoint.
pub const SETTLE: Duration = Duration::from_secs(60);
/// The most accounts one pass checks; the rest wait for the next pass.
pub const MAX_ACCOUNTS: i64 = 1000;

/// What one replica has verified so far.
#[derive(Default)]
pub struct LedgerCheck {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The database's clock at the start of the last successful pass.
    since: Option<DateTime<Utc>>,
    /// Per tenant: entries up to `last_id` sum to `balance` and `held`.
    checkpoints: HashMap<String, Checkpoint>,
    /// Tenants whose account differed from their ledger at their last check.
    wrong: HashSet<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Checkpoint {
    last_id: i64,
    balance: i64,
    held: i64,
}

/// One tenant as a pass reads it.
#[derive(sqlx::FromRow)]
struct Read {
    tenant: String,
    balance: i64,
    held: i64,
    /// Sums of the entries after the checkpoint.
    b: i64,
    h: i64,
    /// The new checkpoint: the last id below every entry younger than [`SETTLE`], and the
    /// sums of the entries after the old checkpoint up to it.
    settled_id: i64,
    settled_b: i64,
    settled_h: i64,
}

impl LedgerCheck {
    /// One pass: checks the accounts changed since the last pass (the first pass: within
    /// `first_window`) and those found wrong before. Returns the accounts that differ, one
    /// line each.
    pub async fn pass(&self, db: &PgPool, first_window: Duration) -> sqlx::Result<Vec<String>> {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(db).await?;
        let (since, wrong) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let since = state.since.unwrap_or(now - first_window);
            (since, state.wrong.iter().cloned().collect::<Vec<_>>())
        };
        let mut tenants: Vec<String> = sqlx::query_scalar(
            "SELECT tenant FROM credit_accounts WHERE updated_at >= $1 \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(since)
        .bind(MAX_ACCOUNTS)
        .fetch_all(db)
        .await?;
        tenants.extend(wrong);
        tenants.sort();
        tenants.dedup();
        let after: Vec<i64> = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let at = |t: &String| state.checkpoints.get(t).map_or(0, |c| c.last_id);
            tenants.iter().map(at).collect()
        };
        let reads: Vec<Read> = sqlx::query_as(READ)
            .bind(&tenants)
            .bind(&after)
            .bind(SETTLE.as_secs_f64())
            .fetch_all(db)
            .await?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = Vec::new();
        for r in reads {
            let cp = state
                .checkpoints
                .get(&r.tenant)
                .copied()
                .unwrap_or_default();
            let (balance, held) = (cp.balance + r.b, cp.held + r.h);
            if (balance, held) == (r.balance, r.held) {
                state.wrong.remove(&r.tenant);
            } else {
                found.push(format!(
                    "account {}: balance {} held {}, its ledger says {balance} and {held}",
                    r.tenant, r.balance, r.held
                ));
                state.wrong.insert(r.tenant.clone());
            }
            let next = Checkpoint {
                last_id: r.settled_id.max(cp.last_id),
                balance: cp.balance + r.settled_b,
                held: cp.held + r.settled_h,
            };
            state.checkpoints.insert(r.tenant, next);
        }
        // The window overlaps the previous one by a little: an account updated by a
        // transaction that started before `now` and committed after the read above is
        // checked again next time.
        state.since = Some(now - SETTLE);
        Ok(found)
    }
}

/// Per tenant ($1) after its checkpoint ($2): the account, the sums of the newer entries,
/// and the new checkpoint (below the first entry younger than $3 seconds).
const READ: &str = "\
    SELECT t.tenant, a.balance, a.held, s.b, s.h, c.settled_id, c.settled_b, c.settled_h \
    FROM unnest($1::text[], $2::bigint[]) AS t(tenant, after) \
    JOIN credit_accounts a ON a.tenant = t.tenant \
    CROSS JOIN LATERAL ( \
        SELECT COALESCE(sum(balance_delta), 0)::bigint AS b, \
               COALESCE(sum(held_delta), 0)::bigint AS h, \
               COALESCE(min(id) FILTER (WHERE created_at > now() - make_interval(secs => $3)) - 1, \
                        max(id), t.after) AS cut \
        FROM credit_ledger l WHERE l.tenant = t.tenant AND l.id > t.after) s \
    CROSS JOIN LATERAL ( \
        SELECT s.cut AS settled_id, \
               COALESCE(sum(balance_delta), 0)::bigint AS settled_b, \
               COALESCE(sum(held_delta), 0)::bigint AS settled_h \
        FROM credit_ledger l WHERE l.tenant = t.tenant AND l.id > t.after AND l.id <= s.cut) c";
