//! `failed`: Redis decides between a retry (backoff, attempts left) and the dead-letter
//! set; the row follows that decision in the same transaction that holds its lock.

use gpuq_queue::{FailOutcome, Failure, Queue};
use gpuq_schemas::{JobEvent, JobId, JobStatus};

use super::{ignored, job, redis_error, RecordError, Recorded, Recorder, Report, REDIS_TIMEOUT};

/// What the row becomes.
enum Decision {
    /// Back to `queued`: Redis will deliver the job again. `attempt` is the attempt that
    /// failed, when Redis said.
    Requeue { attempt: Option<u32> },
    /// Finished for good.
    Finish {
        status: JobStatus,
        attempt: Option<u32>,
    },
}

/// Where Redis has a job that is not in flight.
enum Whereabouts {
    /// Waiting or delayed: a retry or redelivery is already underway.
    Queued,
    /// Dead-lettered.
    Dead,
    /// Unknown to Redis (lost, or already finished there).
    Gone,
}

impl Recorder {
    /// Records a failed attempt. Redis is asked first (under the row lock); if it cannot
    /// answer, the callback fails with 503 and nothing changes, so the worker retries it.
    pub(super) async fn failed(&self, report: Report) -> Result<Recorded, RecordError> {
        let cb = report.callback;
        let error = cb
            .error
            .unwrap_or_else(|| gpuq_schemas::callback::CallbackError {
                message: "worker reported failure without a message".into(),
                retryable: false,
            });
        let mut tx = self.pool.begin().await?;
        let job = job::lock(&mut tx, cb.job_id).await?;
        if !job.status.can_transition(JobStatus::Failed) {
            return Ok(ignored(&job));
        }
        let queue = self.queue(&job.queue)?;
        let failure = Failure {
            retryable: error.retryable,
            message: error.message.clone(),
        };
        let outcome = redis_error(
            tokio::time::timeout(REDIS_TIMEOUT, queue.fail(job.id, None, &failure)).await,
        )?;
        tracing::info!(?outcome, retryable = error.retryable, "attempt failed");
        let decision = match outcome {
            FailOutcome::Retrying { attempt, .. } => Decision::Requeue {
                attempt: Some(attempt),
            },
            FailOutcome::Dead { attempt } => Decision::Finish {
                status: JobStatus::Failed,
                attempt: Some(attempt),
            },
            FailOutcome::Cancelled => Decision::Finish {
                status: JobStatus::Cancelled,
                attempt: None,
            },
            FailOutcome::NotInFlight | FailOutcome::HeldByOther => {
                match self.whereabouts(&queue, job.id).await? {
                    Whereabouts::Queued => Decision::Requeue { attempt: None },
                    Whereabouts::Dead | Whereabouts::Gone => Decision::Finish {
                        status: JobStatus::Failed,
                        attempt: report.attempt,
                    },
                }
            }
        };
        let status = match decision {
            Decision::Requeue { attempt } => {
                sqlx::query(
                    "UPDATE jobs SET status = 'queued', error_message = $2, \
                     attempts = GREATEST(attempts, $3), updated_at = now() WHERE id = $1",
                )
                .bind(job.id.as_uuid())
                .bind(&error.message)
                .bind(as_i32(attempt.unwrap_or(0)))
                .execute(&mut *tx)
                .await?;
                JobStatus::Queued
            }
            Decision::Finish { status, attempt } => {
                sqlx::query(
                    "UPDATE jobs SET status = $2, error_message = $3, completed_at = now(), \
                     attempts = GREATEST(attempts, $4, 1), \
                     worker_id = COALESCE($5, worker_id), updated_at = now() WHERE id = $1",
                )
                .bind(job.id.as_uuid())
                .bind(status.as_str())
                .bind(&error.message)
                .bind(as_i32(attempt.unwrap_or(0)))
                .bind(&cb.worker_id)
                .execute(&mut *tx)
                .await?;
                status
            }
        };
        tx.commit().await?;
        let message = (status != JobStatus::Cancelled).then(|| error.message.clone());
        self.publish(JobEvent::status(job.id, status, message))
            .await;
        Ok(Recorded::changed(&job, status))
    }

    /// Where Redis keeps a job that its fail script found not in flight.
    async fn whereabouts(&self, queue: &Queue, job: JobId) -> Result<Whereabouts, RecordError> {
        let keys = queue.keys();
        let mut conn = self.conn.clone();
        let id = job.to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("HEXISTS")
            .arg(keys.jobs())
            .arg(&id)
            .cmd("ZSCORE")
            .arg(keys.dead())
            .arg(&id);
        let query = pipe.query_async::<(bool, Option<f64>)>(&mut conn);
        let (known, dead) = redis_error(tokio::time::timeout(REDIS_TIMEOUT, query).await)?;
        Ok(match (known, dead) {
            (_, Some(_)) => Whereabouts::Dead,
            (true, None) => Whereabouts::Queued,
            (false, None) => Whereabouts::Gone,
        })
    }
}

fn as_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
