//! The end-of-run ledger check (the chaos run enqueues with credits on): after every fault,
//! each accepted job holds its price exactly once per start it was given, a finished job's
//! holds are all closed (one settlement if it completed, releases otherwise), and no
//! account differs from its ledger (`credit_violations`).

use uuid::Uuid;

/// Every ledger violation among `accepted` jobs and every account, one line each.
pub(super) async fn violations(
    db: &sqlx::PgPool,
    accepted: &[Uuid],
) -> anyhow::Result<Vec<String>> {
    let found = sqlx::query_scalar(
        "SELECT format('job %s (%s): %s holds, %s settlements, %s releases', \
                       j.id, j.status, c.holds, c.settles, c.releases) \
         FROM jobs j, LATERAL ( \
             SELECT count(*) FILTER (WHERE kind = 'hold') AS holds, \
                    count(*) FILTER (WHERE kind = 'settle') AS settles, \
                    count(*) FILTER (WHERE kind = 'release') AS releases \
             FROM credit_ledger l WHERE l.job_id = j.id) c \
         WHERE j.id = ANY($1) AND NOT ( \
             c.holds >= 1 AND CASE \
                 WHEN j.status IN ('queued', 'processing') \
                     THEN c.settles = 0 AND c.holds = c.releases + 1 \
                 WHEN j.status = 'completed' \
                     THEN c.settles = 1 AND c.holds = c.releases + 1 \
                 ELSE c.settles = 0 AND c.holds = c.releases END) \
         UNION ALL \
         SELECT format('%s %s: %s', kind, COALESCE(job_id::text, tenant), detail) \
         FROM credit_violations",
    )
    .bind(accepted)
    .fetch_all(db)
    .await?;
    Ok(found)
}
