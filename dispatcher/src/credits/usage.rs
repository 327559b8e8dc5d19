//! Usage: attempts, GPU-seconds and credits charged, by day (UTC), tenant and job type,
//! from `job_attempts` and the ledger's settlements.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// The longest window one read covers, days.
pub const MAX_DAYS: u32 = 366;
/// The most rows one read returns (the earliest days are left out beyond it).
pub const MAX_ROWS: i64 = 5000;

/// Whose usage.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// One user's jobs.
    User(Uuid),
    /// One tenant's jobs, or every tenant's (None).
    Tenant(Option<&'a str>),
}

/// One day's usage of one job type by one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The day (UTC) the attempts ended and the charges were made.
    pub day: NaiveDate,
    /// The tenant charged.
    pub tenant: String,
    /// The job type.
    pub job_type: String,
    /// Jobs completed.
    pub jobs: i64,
    /// Attempts ended (completed, failed, retried, cancelled or lost).
    pub attempts: i64,
    /// GPU-seconds of those attempts, from their start report to their end.
    pub gpu_seconds: f64,
    /// Credits charged for the jobs completed (0 while credits are off).
    pub credits: i64,
}

/// Usage over the last `days` days, oldest first.
pub async fn usage(db: &PgPool, who: Who<'_>, days: u32) -> sqlx::Result<Vec<UsageRow>> {
    let (user, tenant) = match who {
        Who::User(u) => (Some(u), None),
        Who::Tenant(t) => (None, t),
    };
    let mut rows: Vec<UsageRow> = sqlx::query_as(
        "WITH a AS ( \
             SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, tenant, job_type, \
                    count(*) FILTER (WHERE outcome = 'completed') AS jobs, \
                    count(*) AS attempts, COALESCE(sum(gpu_seconds), 0) AS gpu_seconds \
             FROM job_attempts \
             WHERE finished_at >= now() - make_interval(days => $3) \
               AND ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR tenant = $2) \
             GROUP BY 1, 2, 3), \
         c AS ( \
             SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, l.tenant, j.job_type, \
                    -sum(l.balance_delta)::bigint AS credits \
             FROM credit_ledger l JOIN jobs j ON j.id = l.job_id \
             WHERE l.kind = 'settle' AND l.created_at >= now() - make_interval(days => $3) \
               AND ($1::uuid IS NULL OR j.user_id = $1) AND ($2::text IS NULL OR l.tenant = $2) \
             GROUP BY 1, 2, 3) \
         SELECT day, tenant, job_type, COALESCE(a.jobs, 0) AS jobs, \
                COALESCE(a.attempts, 0) AS attempts, \
                COALESCE(a.gpu_seconds, 0) AS gpu_seconds, COALESCE(c.credits, 0) AS credits \
         FROM a FULL JOIN c USING (day, tenant, job_type) \
         ORDER BY day DESC, tenant DESC, job_type DESC LIMIT $4",
    )
    .bind(user)
    .bind(tenant)
    .bind(i32::try_from(days.clamp(1, MAX_DAYS)).unwrap_or(30))
    .bind(MAX_ROWS)
    .fetch_all(db)
    .await?;
    rows.reverse();
    Ok(rows)
}
