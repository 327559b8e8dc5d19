//! Webhook endpoints, deliveries and the delivery log in PostgreSQL. Deliveries are
//! written by the `jobs` trigger and `gpuq_webhook_progress` (the migration); here they are
//! taken, settled and replayed, and endpoints are managed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// A delivery a sender took: post `body` to `url`, signed with `secret`.
#[derive(sqlx::FromRow)]
pub struct Due {
    /// The delivery's id: the `webhook-id`.
    pub id: Uuid,
    /// Its endpoint; None for a job's own webhook (signed with the job secret).
    pub endpoint_id: Option<i64>,
    /// Where to post.
    pub url: String,
    /// The endpoint's `whsec_...`; None for a job's own webhook.
    pub secret: Option<String>,
    /// The job's tenant (a job's own webhook is signed with the tenant's key).
    pub tenant: Option<String>,
    /// The JSON body, exactly as signed and sent.
    pub body: String,
    /// Attempts before this one.
    pub attempts: i32,
    /// Attempts before this one since its retry window opened.
    pub round_attempts: i32,
    /// When its retry window opened (the event, or an admin's replay).
    pub retry_from: DateTime<Utc>,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due")
            .field("id", &self.id)
            .field("endpoint_id", &self.endpoint_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Takes up to `batch` due deliveries of enabled endpoints and moves their next attempt
/// `lease` ahead, so no other sender takes them meanwhile; a sender that dies mid-post
/// leaves them to the next after that. `SKIP LOCKED`: replicas take disjoint batches.
/// Jobs' own webhooks only with `job_webhooks` (a sender that has the job secret): a replica
/// without it leaves them to one that can sign them.
pub async fn take_due(
    db: &PgPool,
    batch: u32,
    lease: Duration,
    job_webhooks: bool,
) -> sqlx::Result<Vec<Due>> {
    sqlx::query_as(
        "WITH due AS (
             SELECT d.id, e.url, e.secret FROM webhook_deliveries d
             LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               AND (e.enabled OR (d.endpoint_id IS NULL AND $3))
             ORDER BY d.next_attempt_at
             LIMIT $1
             FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d
         SET next_attempt_at = now() + make_interval(secs => $2)
         FROM due
         WHERE d.id = due.id
         RETURNING d.id, d.endpoint_id, coalesce(d.url, due.url) AS url, due.secret,
                   d.payload #>> '{data,tenant}' AS tenant, d.payload::text AS body,
                   d.attempts, d.round_attempts, d.retry_from",
    )
    .bind(i64::from(batch))
    .bind(lease.as_secs_f64())
    .bind(job_webhooks)
    .fetch_all(db)
    .await
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The receiver's status code, when it answered.
    pub status: Option<u16>,
    /// Why it did not count: a status other than 2xx, a timeout, a refused connection.
    pub error: Option<String>,
    /// How long the attempt took.
    pub latency: Duration,
}

/// Records a delivered attempt: the delivery is done and its endpoint no longer failing.
/// Only a pending delivery that no one else recorded an attempt of since it was taken
/// changes, and only then is the attempt logged.
pub async fn delivered(db: &PgPool, due: &Due, outcome: &Outcome) -> sqlx::Result<()> {
    sqlx::query(
        "WITH d AS (
             UPDATE webhook_deliveries
             SET status = 'delivered', delivered_at = now(), attempts = $2,
                 round_attempts = round_attempts + 1, last_status = $3, last_error = NULL
             WHERE id = $1 AND status = 'pending' AND attempts = $2 - 1
             RETURNING endpoint_id),
         log AS (
             INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms)
             SELECT $1, $2, $3, $4 FROM d)
         UPDATE webhook_endpoints SET failing_since = NULL, updated_at = now()
         WHERE id IN (SELECT endpoint_id FROM d) AND failing_since IS NOT NULL",
    )
    .bind(due.id)
    .bind(due.attempts + 1)
    .bind(outcome.status.map(i32::from))
    .bind(latency_ms(outcome.latency))
    .execute(db)
    .await
    .map(drop)
}

/// Records a failed attempt: the delivery waits `retry_in`, or with `None` is given up
/// (`failed`). The endpoint is failing from its first failure on, and is disabled once it
/// has failed for `disable_after` without a delivery in between.
pub async fn failed(
    db: &PgPool,
    due: &Due,
    outcome: &Outcome,
    retry_in: Option<Duration>,
    disable_after: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH d AS (
             UPDATE webhook_deliveries
             SET status = CASE WHEN $5::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                 next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                        ELSE now() + make_interval(secs => $5::float8) END,
                 attempts = $2, round_attempts = round_attempts + 1, last_status = $3,
                 last_error = $6
             WHERE id = $1 AND status = 'pending' AND attempts = $2 - 1
             RETURNING endpoint_id),
         log AS (
             INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, latency_ms)
             SELECT $1, $2, $3, $6, $4 FROM d)
         UPDATE webhook_endpoints e
         SET failing_since = coalesce(e.failing_since, now()),
             enabled = e.enabled AND NOT coalesce(e.failing_since < now() - make_interval(secs => $7), false),
             disabled_reason = CASE WHEN e.enabled AND e.failing_since < now() - make_interval(secs => $7)
                 THEN 'every delivery failed since ' || to_char(e.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                 ELSE e.disabled_reason END,
             updated_at = now()
         WHERE e.id IN (SELECT endpoint_id FROM d) AND e.deleted_at IS NULL",
    )
    .bind(due.id)
    .bind(due.attempts + 1)
    .bind(outcome.status.map(i32::from))
    .bind(latency_ms(outcome.latency))
    .bind(retry_in.map(|d| d.as_secs_f64()))
    .bind(outcome.error.as_deref())
    .bind(disable_after.as_secs_f64())
    .execute(db)
    .await
    .map(drop)
}

fn latency_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// An endpoint as admins see it (never its secret).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Its id.
    pub id: i64,
    /// Where deliveries are posted.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// Only this tenant's jobs; null: every job.
    pub tenant: Option<String>,
    /// What it is for.
    pub description: String,
    /// Whether deliveries are posted; a disabled endpoint's deliveries wait.
    pub enabled: bool,
    /// Why it was disabled automatically, if it was.
    pub disabled_reason: Option<String>,
    /// Since when every attempt failed; null: the last one was delivered.
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries waiting to be posted.
    pub pending: i64,
    /// Deliveries given up.
    pub failed: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str = "e.id, e.url, e.events, e.tenant::text AS tenant, e.description, e.enabled,
    e.disabled_reason, e.failing_since, e.created_at,
    (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,
    (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'failed') AS failed";

/// Every endpoint, oldest first.
pub async fn list(db: &PgPool) -> sqlx::Result<Vec<Endpoint>> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.deleted_at IS NULL ORDER BY e.id"
    ))
    .fetch_all(db)
    .await
}

/// One endpoint.
pub async fn get(db: &PgPool, id: i64) -> sqlx::Result<Option<Endpoint>> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.id = $1 AND e.deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A new endpoint's settings, checked.
#[derive(Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub tenant: Option<String>,
    pub description: String,
}

impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Registers an endpoint; returns its id.
pub async fn create(db: &PgPool, new: &NewEndpoint) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO webhook_endpoints (url, secret, events, tenant, description)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&new.url)
    .bind(&new.secret)
    .bind(&new.events)
    .bind(&new.tenant)
    .bind(&new.description)
    .fetch_one(db)
    .await
}

/// Changes to an endpoint; `None` keeps a setting.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Applies `change`; enabling clears the failure record (it starts afresh). False: no
/// such endpoint.
pub async fn update(db: &PgPool, id: i64, change: &EndpointChange) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET
             url = coalesce($2, url),
             events = coalesce($3, events),
             description = coalesce($4, description),
             enabled = coalesce($5, enabled),
             disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
             failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(&change.url)
    .bind(&change.events)
    .bind(&change.description)
    .bind(change.enabled)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes an endpoint: it is disabled and hidden, its deliveries never sent. The row
/// stays, so that a job's transaction writing a delivery for it at that very moment does
/// not fail on the foreign key. False: no such endpoint.
pub async fn delete(db: &PgPool, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints
         SET enabled = false, deleted_at = now(), disabled_reason = 'deleted', updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A delivery and its last attempts, for admins.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The `webhook-id`.
    pub id: Uuid,
    /// The job.
    pub job_id: Uuid,
    /// `queued`, `started`, `progress`, `completed`, `failed` or `cancelled`.
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's status code.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The delivery log, oldest first (at most the last 20 attempts).
    #[schema(value_type = Vec<Attempt>)]
    pub log: sqlx::types::Json<Vec<Attempt>>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1, 2, ...
    pub attempt: i32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's status code, if it answered.
    pub status_code: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took, ms.
    pub latency_ms: i32,
}

/// An endpoint's deliveries, newest first, optionally of one status.
pub async fn deliveries(
    db: &PgPool,
    endpoint: i64,
    status: Option<&str>,
    limit: u32,
) -> sqlx::Result<Vec<Delivery>> {
    sqlx::query_as(
        "SELECT d.id, d.job_id, d.event, d.status, d.attempts, d.last_status, d.last_error,
                d.created_at, d.delivered_at,
                CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'at', a.at,
                              'statusCode', a.status_code, 'error', a.error,
                              'latencyMs', a.latency_ms) ORDER BY a.attempt)
                          FROM (SELECT * FROM webhook_attempts a WHERE a.delivery_id = d.id
                                ORDER BY a.attempt DESC LIMIT 20) a), '[]'::jsonb) AS log
         FROM webhook_deliveries d
         WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
         ORDER BY d.created_at DESC, d.id
         LIMIT $3",
    )
    .bind(endpoint)
    .bind(status)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await
}

/// Sends the deliveries again from now, with a fresh retry window: one (`delivery`), or
/// every failed one of `endpoint`. The `webhook-id` stays, so a receiver that had one
/// drops it. Returns how many.
pub async fn replay(db: &PgPool, endpoint: i64, delivery: Option<Uuid>) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries
         SET status = 'pending', delivered_at = NULL, next_attempt_at = now(), retry_from = now(),
             round_attempts = 0
         WHERE endpoint_id = $1
           AND CASE WHEN $2::uuid IS NULL THEN status = 'failed' ELSE id = $2 END",
    )
    .bind(endpoint)
    .bind(delivery)
    .execute(db)
    .await?;
    if done.rows_affected() > 0 {
        super::sender::wake(db).await;
    }
    Ok(done.rows_affected())
}
