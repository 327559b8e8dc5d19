//! `failed`: Redis decides between a retry (backoff, attempts left) and the dead-letter
//! set, for the report's claim only; the attempt's metering row and the job's row follow
//! that decision in the same transaction that holds its lock (a job that ends releases its
//! credit hold there, by trigger).

use gpuq_queue::{ConsumerName, FailOutcome, Failure};
use gpuq_schemas::{FailureCode, JobEvent, JobStatus, ParsedCallback};

use super::{
    health, ignored, job, redis_error, RecordError, Recorded, Recorder, Stale, REDIS_TIMEOUT,
};

/// What the row becomes.
enum Decision {
    /// Back to `queued`: Redis will deliver the job again. `attempt` is the attempt that
    /// failed.
    Requeue { attempt: u32 },
    /// Finished for good.
    Finish {
        status: JobStatus,
        attempt: Option<u32>,
    },
}

impl Recorder {
    /// Records a failed attempt of the report's claim. Redis is asked first (under the row
    /// lock) and decides atomically, refusing a claim that is not current; if it cannot
    /// answer, the callback fails with 503 and nothing changes, so the worker retries it.
    pub(super) async fn failed(&self, cb: ParsedCallback) -> Result<Recorded, RecordError> {
        let mut error = cb
            .error
            .clone()
            .unwrap_or_else(|| gpuq_schemas::callback::CallbackError {
                message: "worker reported failure without a message".into(),
                retryable: false,
                code: None,
            });
        let mut tx = self.pool.begin().await?;
        let job = job::lock(&mut tx, cb.job_id).await?;
        if !job.status.can_transition(JobStatus::Failed) {
            return Ok(ignored(&job, Stale::Finished));
        }
        let queue = self.queue(&job.queue)?;
        // Canonical reports name their claim; legacy ones fail whoever holds the job now.
        // Read for the claim's time too (the attempt's start, when the worker sent no
        // `processing`); `fail_job.lua` checks the fence again, atomically.
        let claim = self
            .current_claim(&queue, &cb)
            .await?
            .map(|h| (h.consumer, h.fence, h.since_ms));
        let (consumer, fence, since_ms) = match claim {
            Ok(claim) => claim,
            Err(stale) => return Ok(ignored(&job, stale)),
        };
        // What the worker said, before a poison verdict turns it permanent: what the worker
        // is judged on.
        let (reported_retryable, reported) = (error.retryable, error.message.clone());
        let mut poison = false;
        if error.retryable && self.health.poison_after > 0 {
            let workers = health::failed_on(&mut tx, job.id, &consumer).await?;
            if workers >= self.health.poison_after {
                poison = true;
                error = gpuq_schemas::callback::CallbackError {
                    message: format!(
                        "poison_job: failed on {workers} different workers; the last said: {}",
                        error.message
                    ),
                    retryable: false,
                    code: None,
                };
            }
        }
        // A worker that never reported `processing` started its attempt at its claim.
        let claimed_at = super::claim::claimed_at(since_ms, &job);
        let failure = Failure {
            retryable: error.retryable,
            message: error.message.clone(),
        };
        let fail = queue.fail_fenced(job.id, &consumer, &fence, &failure);
        let outcome = redis_error(tokio::time::timeout(REDIS_TIMEOUT, fail).await)?;
        tracing::info!(?outcome, retryable = error.retryable, "attempt failed");
        let decision = match outcome {
            FailOutcome::Retrying { attempt, .. } => Decision::Requeue { attempt },
            FailOutcome::Dead { attempt } => Decision::Finish {
                status: JobStatus::Failed,
                attempt: Some(attempt),
            },
            FailOutcome::Cancelled => Decision::Finish {
                status: JobStatus::Cancelled,
                attempt: None,
            },
            FailOutcome::NotInFlight => return Ok(ignored(&job, Stale::NotInFlight)),
            FailOutcome::HeldByOther => return Ok(ignored(&job, Stale::NotCurrentClaim)),
        };
        let cancelled = matches!(
            decision,
            Decision::Finish {
                status: JobStatus::Cancelled,
                ..
            }
        );
        if cancelled && poison {
            // The owner's cancel won: the job ends cancelled, not as poison, and keeps what
            // the worker said.
            poison = false;
            error.message = reported.clone();
        }
        let outcome = match decision {
            Decision::Requeue { .. } => "retried",
            Decision::Finish {
                status: JobStatus::Cancelled,
                ..
            } => "cancelled",
            Decision::Finish { .. } => "failed",
        };
        // Before the row changes: what the change then closes by trigger is only what no
        // report ended (`lost`).
        let gpu_seconds: Option<f64> = sqlx::query_scalar(
            "SELECT gpuq_finish_attempt(j, $2, $3, $4, $5, $6) FROM jobs j WHERE id = $1",
        )
        .bind(job.id.as_uuid())
        .bind(as_i32(fence.attempt.max(1)))
        .bind(outcome)
        .bind(&consumer)
        .bind(&cb.gpu)
        .bind(claimed_at)
        .fetch_one(&mut *tx)
        .await?;
        health::mark_attempt(
            &mut tx,
            job.id,
            fence.attempt.max(1),
            reported_retryable,
            &reported,
        )
        .await?;
        // A cancel wins over whatever the worker said about its attempt.
        let code = match decision {
            Decision::Finish {
                status: JobStatus::Cancelled,
                ..
            } => None,
            _ if poison => Some(POISON_JOB),
            _ => error.code.map(FailureCode::as_str),
        };
        let status = match decision {
            Decision::Requeue { attempt } => {
                sqlx::query(
                    "UPDATE jobs SET status = 'queued', error_message = $2, error_code = $4, \
                     attempts = GREATEST(attempts, $3), updated_at = now() WHERE id = $1",
                )
                .bind(job.id.as_uuid())
                .bind(&error.message)
                .bind(as_i32(attempt))
                .bind(code)
                .execute(&mut *tx)
                .await?;
                JobStatus::Queued
            }
            Decision::Finish { status, attempt } => {
                // A worker that never reported `processing` started at its claim. (A retried
                // attempt records no start: the job's start is then its next attempt's, and
                // its attempt row keeps its own.)
                sqlx::query(
                    "UPDATE jobs SET status = $2, error_message = $3, error_code = $6, \
                     completed_at = now(), attempts = GREATEST(attempts, $4, 1), \
                     worker_id = $5, updated_at = now(), \
                     started_at = COALESCE(started_at, LEAST($7, now())) \
                     WHERE id = $1",
                )
                .bind(job.id.as_uuid())
                .bind(status.as_str())
                .bind(&error.message)
                .bind(as_i32(attempt.unwrap_or(0)))
                .bind(&consumer)
                .bind(code)
                .bind(claimed_at)
                .execute(&mut *tx)
                .await?;
                status
            }
        };
        let sick = if reported_retryable && status != JobStatus::Cancelled {
            health::judge_worker(&mut tx, &self.health, &job.queue, &consumer).await?
        } else {
            None
        };
        tx.commit().await?;
        if let Some(reason) = &sick {
            self.enforce_quarantine(&queue, &consumer, reason).await;
        }
        let message = (status != JobStatus::Cancelled).then(|| error.message.clone());
        let mut event = JobEvent::status(job.id, status, message);
        event.code = code.map(str::to_owned);
        self.publish(event).await;
        let recorded = Recorded::changed(&job, status).metered(gpu_seconds, outcome);
        // Only an end records the start: a retried attempt writes none (above).
        let recorded = if status.is_terminal() {
            recorded.first_start(&job, claimed_at)
        } else {
            recorded
        };
        Ok(Recorded {
            poison,
            quarantined: sick.is_some(),
            failure_code: (status != JobStatus::Cancelled).then(|| code.unwrap_or("none")),
            ..recorded
        })
    }

    /// Stops a consumer just quarantined from claiming. If Redis does not answer, the
    /// dispatcher's reconciler applies the recorded quarantine within its period.
    async fn enforce_quarantine(&self, queue: &gpuq_queue::Queue, consumer: &str, reason: &str) {
        tracing::error!(
            consumer,
            reason,
            "WORKER QUARANTINED: its recent attempts failed across different jobs"
        );
        let Ok(name) = ConsumerName::parse(consumer) else {
            return;
        };
        let set = tokio::time::timeout(REDIS_TIMEOUT, queue.quarantine(&name, reason)).await;
        if !matches!(set, Ok(Ok(()))) {
            tracing::warn!(
                consumer,
                "quarantine not applied in Redis yet; the reconciler will"
            );
        }
    }
}

/// `jobs.error_code` of a job dead-lettered as poison.
pub const POISON_JOB: &str = "poison_job";

fn as_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
