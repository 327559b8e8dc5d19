//! Worker health (ADR 0019), decided when a failure is recorded, in its transaction:
//! - a **poison job** failed retryably on `poison_after` different healthy workers: it is
//!   dead-lettered at once (`poison_job`) instead of spending its retries on more GPUs;
//! - a **sick worker**'s last `quarantine_after` attempts since its last release all
//!   failed retryably, across at least `quarantine_min_jobs` jobs: it is quarantined (a
//!   `worker_quarantine` row, then the queue refuses its claims).
//!
//! A retryable failure (out of memory, a CUDA error, a run past its limit) is evidence
//! against the GPU; a permanent one (an invalid prompt) is the input's, and counts for
//! neither, nor does a failure recorded before attempts were marked (`retryable` NULL).

use serde::Deserialize;
use sqlx::{Postgres, Transaction};

use gpuq_schemas::JobId;

/// `health` settings of the callback service.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct HealthSettings {
    /// Failed attempts in a row that quarantine a worker (0: never).
    pub quarantine_after: u32,
    /// Different jobs those failures must span (one bad job is not a sick GPU).
    pub quarantine_min_jobs: u32,
    /// Different healthy workers a job may fail on, retryably, before it is dead-lettered
    /// as poison (0: never).
    pub poison_after: u32,
}

impl HealthSettings {
    /// Refuses settings under which a worker could never be quarantined: the verdict reads
    /// its last `quarantine_after` attempts, so they cannot span more jobs than that.
    pub fn check(&self) -> Result<(), String> {
        if self.quarantine_after > 0 && self.quarantine_min_jobs > self.quarantine_after {
            return Err(format!(
                "health.quarantine_min_jobs ({}) may not exceed health.quarantine_after ({}): \
                 the last {} attempts cannot span more jobs, and no worker would ever be \
                 quarantined",
                self.quarantine_min_jobs, self.quarantine_after, self.quarantine_after
            ));
        }
        Ok(())
    }
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            quarantine_after: 5,
            quarantine_min_jobs: 3,
            poison_after: 3,
        }
    }
}

/// The healthy workers (not quarantined) whose attempts on this life of the job failed
/// retryably, counting `consumer`, whose failure is being recorded.
pub(super) async fn failed_on(
    tx: &mut Transaction<'_, Postgres>,
    job: JobId,
    consumer: &str,
) -> Result<u32, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT w) FROM ( \
             SELECT a.worker_id AS w FROM job_attempts a JOIN jobs j ON j.id = a.job_id \
             WHERE a.job_id = $1 AND a.life = j.life AND a.retryable AND a.worker_id IS NOT NULL \
             UNION SELECT $2) t \
         WHERE NOT EXISTS (SELECT 1 FROM worker_quarantine q \
                           WHERE q.consumer = t.w AND q.released_at IS NULL)",
    )
    .bind(job.as_uuid())
    .bind(consumer)
    .fetch_one(&mut **tx)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Marks the attempt's failure as retryable or not, with what the worker said: what the
/// worker and the job are judged on, and the evidence a quarantine shows.
pub(super) async fn mark_attempt(
    tx: &mut Transaction<'_, Postgres>,
    job: JobId,
    attempt: u32,
    retryable: bool,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_attempts a SET retryable = $3, error = $4 FROM jobs j \
         WHERE j.id = $1 AND a.job_id = j.id AND a.life = j.life AND a.attempt = $2",
    )
    .bind(job.as_uuid())
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .bind(retryable)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Quarantines `consumer` of `queue` if its recent attempts say it is sick; returns the
/// reason when this call quarantined it (None: healthy, or already quarantined).
pub(super) async fn judge_worker(
    tx: &mut Transaction<'_, Postgres>,
    settings: &HealthSettings,
    queue: &str,
    consumer: &str,
) -> Result<Option<String>, sqlx::Error> {
    if settings.quarantine_after == 0 {
        return Ok(None);
    }
    // One judgement or release of a worker at a time: a release that commits while this
    // reads the evidence from before it would otherwise be undone at once.
    gpuq_service::database::lock_worker(tx, consumer).await?;
    // Its last N judged attempts since its last release (permanent failures, cancels and
    // lost leases judge nothing), with the evidence should they all have failed.
    let (failed, jobs, evidence): (i64, i64, serde_json::Value) = sqlx::query_as(
        "WITH since AS ( \
             SELECT COALESCE(max(released_at), '-infinity') AS t FROM worker_quarantine \
             WHERE consumer = $1), \
         recent AS ( \
             SELECT a.job_id, a.attempt, a.job_type, a.finished_at, a.outcome, a.error \
             FROM job_attempts a, since \
             WHERE a.worker_id = $1 AND a.finished_at IS NOT NULL AND a.finished_at > since.t \
               AND (a.outcome = 'completed' OR (a.outcome IN ('retried', 'failed') AND a.retryable)) \
             ORDER BY a.finished_at DESC, a.attempt DESC, a.job_id LIMIT $2) \
         SELECT count(*) FILTER (WHERE r.outcome <> 'completed'), count(DISTINCT r.job_id), \
                COALESCE(json_agg(json_build_object('jobId', r.job_id, 'attempt', r.attempt, \
                    'jobType', r.job_type, 'finishedAt', r.finished_at, \
                    'error', r.error) ORDER BY r.finished_at DESC), '[]'::json)::jsonb \
         FROM recent r",
    )
    .bind(consumer)
    .bind(i64::from(settings.quarantine_after))
    .fetch_one(&mut **tx)
    .await?;
    let sick = failed >= i64::from(settings.quarantine_after)
        && jobs >= i64::from(settings.quarantine_min_jobs.max(1));
    if !sick {
        return Ok(None);
    }
    let reason = format!(
        "its last {failed} attempts failed, on {jobs} different jobs; an admin releases it \
         (POST /admin/workers/{consumer}/release)"
    );
    sqlx::query_scalar(
        "INSERT INTO worker_quarantine (queue, consumer, reason, evidence) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (consumer) WHERE released_at IS NULL DO NOTHING RETURNING reason",
    )
    .bind(queue)
    .bind(consumer)
    .bind(&reason)
    .bind(evidence)
    .fetch_optional(&mut **tx)
    .await
}
