//! Quarantined workers (ADR 0019). The callback service quarantines a worker whose recent
//! attempts failed across different jobs: a `worker_quarantine` row (the record), then a
//! field the queue's claim reads (the enforcement). Here: the admin view and release, and
//! the reconciler pass that makes Redis agree with the record within one period.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use gpuq_queue::{ConsumerName, Queue};

/// A worker that may not claim until an admin releases it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Quarantine {
    /// The queue it served.
    pub queue: String,
    /// Its consumer name.
    pub consumer: String,
    /// When it was quarantined.
    pub since: DateTime<Utc>,
    /// Why, as its claims are told.
    pub reason: String,
    /// The failed attempts that decided it, newest first:
    /// `[{jobId, attempt, jobType, finishedAt, error}]`.
    #[schema(value_type = Vec<Object>)]
    pub evidence: serde_json::Value,
}

/// Every active quarantine, newest first.
pub async fn active(db: &PgPool) -> Result<Vec<Quarantine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT queue, consumer, since, reason, evidence FROM worker_quarantine \
         WHERE released_at IS NULL ORDER BY since DESC",
    )
    .fetch_all(db)
    .await
}

/// Ends `consumer`'s quarantine (recorded as released by `by`), then lets it claim again.
/// Returns the queue it was quarantined in; None if it was not. If Redis does not answer,
/// the reconciler lifts it within its period: the record is what counts.
pub async fn release(
    db: &PgPool,
    queues: &std::collections::BTreeMap<String, Queue>,
    consumer: &ConsumerName,
    by: &str,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // The callback service's judgement of this worker takes the same lock: a verdict built
    // on failures from before this release cannot land after it.
    gpuq_service::database::lock_worker(&mut tx, consumer.as_str()).await?;
    let queue: Option<String> = sqlx::query_scalar(
        "UPDATE worker_quarantine SET released_at = now(), released_by = $2 \
         WHERE consumer = $1 AND released_at IS NULL RETURNING queue",
    )
    .bind(consumer.as_str())
    .bind(by)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    if let Some(q) = queue.as_deref().and_then(|name| queues.get(name)) {
        if let Err(e) = q.release_quarantine(consumer).await {
            tracing::warn!(error = %e, %consumer, "quarantine lifted in the record; Redis will follow at the next reconcile");
        }
    }
    Ok(queue)
}

/// Makes `queue`'s quarantined consumers in Redis those the record holds: a quarantine
/// whose Redis write was lost is applied, one released while Redis was away is lifted.
/// Returns how many fields were added and removed.
pub async fn agree(db: &PgPool, queue: &Queue) -> anyhow::Result<(usize, usize)> {
    // Redis first: both writers commit before they touch Redis, so a verdict or a release
    // that lands between the two reads is in the record we read second, and nothing is
    // undone. Read the other way round, it could be.
    let held = queue.quarantined().await?;
    let recorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT consumer, reason FROM worker_quarantine \
         WHERE released_at IS NULL AND queue = $1",
    )
    .bind(queue.name().as_str())
    .fetch_all(db)
    .await?;
    let (mut added, mut removed) = (0, 0);
    for (consumer, reason) in &recorded {
        if !held.iter().any(|(c, _)| c == consumer) {
            if let Ok(name) = ConsumerName::parse(consumer) {
                queue.quarantine(&name, reason).await?;
                added += 1;
            }
        }
    }
    for (consumer, _) in &held {
        if !recorded.iter().any(|(c, _)| c == consumer) {
            if let Ok(name) = ConsumerName::parse(consumer) {
                queue.release_quarantine(&name).await?;
                removed += 1;
            }
        }
    }
    // A release that committed after our read of the record and lifted a field we then put
    // back is undone at the next pass.
    if added + removed > 0 {
        tracing::warn!(queue = %queue.name(), added, removed, "quarantines in Redis brought in line with the record");
    }
    Ok((added, removed))
}
