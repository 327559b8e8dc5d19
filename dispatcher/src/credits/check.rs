//! The reconciler's ledger check: every reconcile period, the accounts changed since the
//! last period must still equal the sum of their ledger entries. A difference is a bug
//! (every change writes its entry in the same transaction): it is logged and counted in
//! `gpuq_credit_violations`, never "fixed" by guessing. The whole-ledger check, including
//! holds left on finished jobs, is the `credit_violations` view (docs/operations.md).

use std::time::Duration;

use sqlx::PgPool;

/// The most accounts one pass checks (the busiest since the last pass come first).
pub const MAX_ACCOUNTS: i64 = 1000;

/// Accounts changed within `since` whose balance or held amount differs from their
/// ledger, one line each.
pub async fn recent_violations(db: &PgPool, since: Duration) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT format('account %s: balance %s held %s, its ledger says %s and %s', \
                       a.tenant, a.balance, a.held, l.b, l.h) \
         FROM (SELECT tenant, balance, held FROM credit_accounts \
               WHERE updated_at > now() - make_interval(secs => $1) \
               ORDER BY updated_at DESC LIMIT $2) a \
         CROSS JOIN LATERAL ( \
             SELECT COALESCE(sum(balance_delta), 0) AS b, COALESCE(sum(held_delta), 0) AS h \
             FROM credit_ledger WHERE tenant = a.tenant) l \
         WHERE a.balance <> l.b OR a.held <> l.h",
    )
    .bind(since.as_secs_f64())
    .bind(MAX_ACCOUNTS)
    .fetch_all(db)
    .await
}
