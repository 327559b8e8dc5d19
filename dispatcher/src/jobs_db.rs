//! The `jobs` table as the dispatcher uses it: insert on enqueue, read, cancel, requeue,
//! and the idempotency keys that remember enqueue answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use gpuq_schemas::JobStatus;

/// A `jobs` row as the API returns it (`Job` in `/openapi.json`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Job)]
pub struct JobRecord {
    /// Job id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Job type.
    pub job_type: String,
    /// Queue.
    pub queue: String,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// Prompt.
    pub prompt: String,
    /// The app's metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Final generation parameters.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Pass-through.
    pub project_id: Option<String>,
    /// Pass-through.
    pub video_id: Option<String>,
    /// Pass-through.
    pub image_id: Option<String>,
    /// Credits charged.
    pub credits: i32,
    /// Attempts started.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Why it failed, for machines, when the queue decided it (`start_deadline_exceeded`).
    pub error_code: Option<String>,
    /// The 7B-enhanced prompt.
    pub enhanced_prompt: Option<String>,
    /// Last worker.
    pub worker_id: Option<String>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// First started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub completed_at: Option<DateTime<Utc>>,
    /// GPU time the worker reported for the generation, seconds (legacy workers'
    /// `generation_time`).
    pub generation_seconds: Option<f64>,
    /// Why the job was sent to a hosted provider's queue instead of its type's own:
    /// `no_live_worker`, `start_over_limit` (its predicted start at enqueue) or
    /// `waited_too_long` (moved while waiting); null when it was not.
    pub routed: Option<String>,
}

const COLUMNS: &str = "id, user_id, job_type, queue, status, prompt, metadata, config, project_id, video_id, \
    image_id, credits, attempts, max_attempts, error_message, error_code, enhanced_prompt, worker_id, \
    created_at, started_at, completed_at, generation_seconds, routed";

/// A job to record (see [`record_batch`]); serialized as one element of the batch.
#[derive(Debug, Clone, Serialize)]
pub struct NewJob {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Type.
    pub job_type: &'static str,
    /// Queue.
    pub queue: String,
    /// Prompt.
    pub prompt: String,
    /// Metadata.
    pub metadata: Value,
    /// Config.
    pub config: Value,
    /// Pass-through ids.
    pub project_id: Option<String>,
    /// Pass-through ids.
    pub video_id: Option<String>,
    /// Pass-through ids.
    pub image_id: Option<String>,
    /// Credits.
    pub credits: i32,
    /// Max attempts.
    pub max_attempts: i32,
    /// Accepted at (whole microseconds, as PostgreSQL stores it).
    pub created_at: DateTime<Utc>,
    /// The envelope as enqueued, for the reconciler.
    pub envelope: Value,
    /// The request's `Idempotency-Key`, claimed with the row.
    pub idempotency_key: Option<String>,
    /// SHA-256 (hex) of the request body the key was used with.
    pub request_hash: Option<String>,
    /// The tenant whose account pays for it.
    pub tenant: String,
    /// Credits to hold at enqueue; None while credits are off.
    pub price: Option<i64>,
    /// A metered price's rate, credits per GPU-second.
    pub per_gpu_second: Option<f64>,
    /// The job's own webhook, if its enqueue named one (`job_webhooks`).
    #[serde(skip)]
    pub webhook: Option<crate::webhooks::job::JobWebhook>,
}

/// What [`record_batch`] checks besides each row: the active-job limit, and the grant a
/// tenant's new account starts with.
#[derive(Debug, Clone, Copy)]
pub struct RecordRules {
    /// Jobs one user may have queued or processing at once.
    pub max_active: i64,
    /// Credits a new account starts with.
    pub starting_grant: i64,
}

impl JobRecord {
    /// The row [`record_batch`] writes for `job`: queued, no attempt yet.
    pub fn queued(job: &NewJob) -> Self {
        Self {
            id: job.id,
            user_id: job.user_id,
            job_type: job.job_type.to_owned(),
            queue: job.queue.clone(),
            status: JobStatus::Queued,
            prompt: job.prompt.clone(),
            metadata: job.metadata.clone(),
            config: job.config.clone(),
            project_id: job.project_id.clone(),
            video_id: job.video_id.clone(),
            image_id: job.image_id.clone(),
            credits: job.credits,
            attempts: 0,
            max_attempts: job.max_attempts,
            error_message: None,
            error_code: None,
            enhanced_prompt: None,
            worker_id: None,
            created_at: job.created_at,
            started_at: None,
            completed_at: None,
            generation_seconds: None,
            routed: None,
        }
    }
}

/// What [`record_batch`] did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The row is committed (and the idempotency key, if any, claimed for it).
    Inserted,
    /// The user already has `active` unfinished jobs, the limit; nothing was written.
    TooManyActive {
        /// Unfinished jobs counted under the user's lock.
        active: i64,
    },
    /// Another request holds the idempotency key; nothing was written.
    KeyTaken,
    /// The tenant's available credits do not cover the price; nothing was written.
    InsufficientCredits(gpuq_service::CreditShortfall),
}

/// Records queued jobs in one round trip and one transaction (`gpuq_record_jobs`, see its
/// migration): for each, under its user's advisory lock, checks the active-job limit,
/// inserts the row, claims its idempotency key and holds its price. Answers in the order
/// of `jobs`.
pub async fn record_batch(
    db: &PgPool,
    jobs: &[&NewJob],
    rules: RecordRules,
) -> sqlx::Result<Vec<Recorded>> {
    #[derive(Serialize)]
    struct Row<'a> {
        ord: usize,
        #[serde(flatten)]
        job: &'a NewJob,
    }
    let rows: Vec<Row<'_>> = jobs
        .iter()
        .enumerate()
        .map(|(ord, &job)| Row { ord, job })
        .collect();
    /// One answer of `gpuq_record_jobs`; the account's figures only with
    /// `insufficient_credits`.
    #[derive(sqlx::FromRow)]
    struct Answer {
        recorded_id: Uuid,
        outcome: String,
        active_jobs: i64,
        balance: Option<i64>,
        held: Option<i64>,
    }
    // A batch with jobs' own webhooks writes them in the same statement, so the trigger that
    // writes the `queued` events at commit finds them; one without costs nothing more.
    let hooks: Vec<(Uuid, &str, &[String])> = jobs
        .iter()
        .filter_map(|j| Some((j.id, j.webhook.as_ref()?)))
        .map(|(id, w)| (id, w.url.as_str(), w.events.as_slice()))
        .collect();
    let sql = if hooks.is_empty() {
        "SELECT recorded_id, outcome, active_jobs, balance, held \
         FROM gpuq_record_jobs($1, $2, $3)"
    } else {
        "WITH r AS (SELECT * FROM gpuq_record_jobs($1, $2, $3)),
              w AS (INSERT INTO job_webhooks (job_id, url, events)
                    SELECT h.job_id, h.url, h.events FROM jsonb_to_recordset($4)
                        AS h(job_id uuid, url text, events text[])
                    JOIN r ON r.recorded_id = h.job_id AND r.outcome = 'inserted')
         SELECT recorded_id, outcome, active_jobs, balance, held FROM r"
    };
    let mut query = sqlx::query_as(sql)
        .bind(sqlx::types::Json(&rows))
        .bind(rules.max_active)
        .bind(rules.starting_grant);
    if !hooks.is_empty() {
        let hooks: Vec<Value> = hooks
            .into_iter()
            .map(
                |(id, url, events)| serde_json::json!({"job_id": id, "url": url, "events": events}),
            )
            .collect();
        query = query.bind(sqlx::types::Json(hooks));
    }
    let answers: Vec<Answer> = query.fetch_all(db).await?;
    let prices: HashMap<Uuid, i64> = jobs.iter().filter_map(|j| Some((j.id, j.price?))).collect();
    let mut by_id = HashMap::with_capacity(answers.len());
    for a in answers {
        let (id, active) = (a.recorded_id, a.active_jobs);
        let recorded = match a.outcome.as_str() {
            "inserted" => Recorded::Inserted,
            "too_many_active" => Recorded::TooManyActive { active },
            "key_taken" => Recorded::KeyTaken,
            "insufficient_credits" => {
                let (balance, held) = (a.balance.unwrap_or(0), a.held.unwrap_or(0));
                Recorded::InsufficientCredits(gpuq_service::CreditShortfall {
                    balance,
                    held,
                    available: balance - held,
                    price: prices.get(&id).copied().unwrap_or(0),
                })
            }
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "gpuq_record_jobs answered {other:?}"
                )))
            }
        };
        by_id.insert(id, recorded);
    }
    jobs.iter()
        .map(|job| {
            by_id.remove(&job.id).ok_or_else(|| {
                sqlx::Error::Protocol(format!("gpuq_record_jobs did not answer for {}", job.id))
            })
        })
        .collect()
}

/// One job.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<Option<JobRecord>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// One job, locked for update.
pub async fn get_for_update(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> sqlx::Result<Option<JobRecord>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Sets a terminal status with an optional message.
pub async fn finish<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    status: JobStatus,
    message: Option<&str>,
) -> sqlx::Result<bool> {
    debug_assert!(status.is_terminal());
    let done = sqlx::query(
        "UPDATE jobs SET status = $2, error_message = COALESCE($3, error_message), completed_at = now(), \
         updated_at = now() WHERE id = $1 AND status IN ('queued', 'processing')",
    )
    .bind(id)
    .bind(status)
    .bind(message)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The code of a job that no worker started by its deadline.
pub const START_DEADLINE_EXCEEDED: &str = "start_deadline_exceeded";
/// Its message.
pub const START_DEADLINE_MESSAGE: &str = "no worker started the job within its startWithinSeconds";

/// Fails a job that is still `queued` because its start deadline passed; false if it was
/// not queued any more (a worker started it, or it ended otherwise).
pub async fn fail_unstarted<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'failed', error_code = $2, error_message = $3, \
         completed_at = now(), updated_at = now() WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .bind(START_DEADLINE_EXCEEDED)
    .bind(START_DEADLINE_MESSAGE)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts an unfinished job back to `queued` (its lease expired and Redis requeued it).
pub async fn mark_requeued(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE jobs SET status = 'queued', updated_at = now() WHERE id = $1 AND status = 'processing'")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives a failed job a fresh start (admin requeue of a dead job): a new life, whose
/// attempts count from 1 again. False if the job is not `failed` (yet).
pub async fn reopen<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, error_message = NULL, completed_at = NULL, \
         worker_id = NULL, started_at = NULL, life = life + 1, updated_at = now() \
         WHERE id = $1 AND status = 'failed'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Locks the credit accounts of `jobs`' tenants, in tenant order, inside the caller's
/// transaction: one that ends several jobs takes their accounts (through the
/// `jobs_close_hold` trigger) in the same order as every other transaction does, so they
/// never wait for each other in a cycle (migration `…0007_credits.sql`).
pub async fn lock_accounts(tx: &mut Transaction<'_, Postgres>, jobs: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT 1 FROM credit_accounts WHERE tenant IN \
         (SELECT gpuq_job_tenant(j) FROM jobs j WHERE j.id = ANY($1)) \
         ORDER BY tenant FOR UPDATE",
    )
    .bind(jobs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a job that never reached the queue (queue full).
pub async fn delete<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// An `images` row as the API returns it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputImage {
    /// Index within the job.
    pub index: i32,
    /// Storage bucket.
    pub bucket: String,
    /// Storage key, `<user_id>/...`.
    pub path: String,
    /// Thumbnail key, if any.
    pub thumbnail_path: Option<String>,
    /// The seed that made it.
    pub seed: Option<i64>,
    /// Pixels.
    pub width: Option<i32>,
    /// Pixels.
    pub height: Option<i32>,
}

/// A `videos` row as the API returns it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputVideo {
    /// Index within the job.
    pub index: i32,
    /// Storage bucket.
    pub bucket: String,
    /// Storage key, `<user_id>/...`.
    pub path: String,
    /// Thumbnail key, if any.
    pub thumbnail_path: Option<String>,
    /// The seed that made it.
    pub seed: Option<i64>,
    /// Length.
    pub duration_seconds: Option<f64>,
}

/// Output rows of a job: images and videos, by index.
pub async fn outputs(db: &PgPool, id: Uuid) -> sqlx::Result<(Vec<OutputImage>, Vec<OutputVideo>)> {
    let images = sqlx::query_as(
        "SELECT image_index AS index, bucket, storage_path AS path, thumbnail_path, seed, \
         width, height FROM images WHERE job_id = $1 ORDER BY image_index",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    let videos = sqlx::query_as(
        "SELECT video_index AS index, bucket, storage_path AS path, thumbnail_path, seed, \
         duration_seconds FROM videos WHERE job_id = $1 \
         ORDER BY video_index",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok((images, videos))
}

/// An idempotency key used within the last 24 h: its job, the answer given (`{}` while
/// the first request is still between its row and its enqueue) and the request's hash
/// (`None` for keys claimed before hashes were kept).
#[derive(Debug, sqlx::FromRow)]
pub struct IdempotentAnswer {
    /// The job the key made.
    pub job_id: Uuid,
    /// The answer given.
    pub response: Value,
    /// SHA-256 (hex) of the body the key was first used with.
    pub request_hash: Option<String>,
}

/// The stored answer for an idempotency key used within the last 24 h.
pub async fn idempotent_answer(
    db: &PgPool,
    user: Uuid,
    key: &str,
) -> sqlx::Result<Option<IdempotentAnswer>> {
    sqlx::query_as(
        "SELECT job_id, response, request_hash FROM idempotency_keys \
         WHERE user_id = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Frees an idempotency key claimed for `job`, whose enqueue failed.
pub async fn release_idempotency_key(
    db: &PgPool,
    user: Uuid,
    key: &str,
    job: Uuid,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND job_id = $3")
        .bind(user)
        .bind(key)
        .bind(job)
        .execute(db)
        .await?;
    Ok(())
}

/// Records the answer given for an idempotency key.
pub async fn store_answer(db: &PgPool, user: Uuid, key: &str, answer: &Value) -> sqlx::Result<()> {
    sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE user_id = $1 AND key = $2")
        .bind(user)
        .bind(key)
        .bind(answer)
        .execute(db)
        .await?;
    Ok(())
}
