//! `processing`: a worker started (or, after a redelivery, restarted) the job.

use gpuq_schemas::{JobEvent, JobStatus};

use super::{ignored, job, RecordError, Recorded, Recorder, Report, REDIS_TIMEOUT};

impl Recorder {
    /// Sets status `processing`, the worker id, `started_at` (the first start is kept) and
    /// `attempts` (see [`Recorder::delivery_attempt`]).
    pub(super) async fn processing(&self, report: Report) -> Result<Recorded, RecordError> {
        let cb = report.callback;
        let mut tx = self.pool.begin().await?;
        let job = job::lock(&mut tx, cb.job_id).await?;
        if !job.status.can_transition(JobStatus::Processing) {
            return Ok(ignored(&job));
        }
        let attempt = match report.attempt {
            Some(a) => Some(a),
            None => self.delivery_attempt(&job).await,
        };
        // Without any attempt number, a start from `queued` is a new delivery.
        let attempts = match attempt {
            Some(a) => job.attempts.max(i32::try_from(a).unwrap_or(i32::MAX)),
            None if job.status == JobStatus::Queued => job.attempts.saturating_add(1),
            None => job.attempts,
        };
        let worker = cb.worker_id.or_else(|| job.worker_id.clone());
        sqlx::query(
            "UPDATE jobs SET status = 'processing', started_at = COALESCE(started_at, now()), \
             worker_id = $2, attempts = $3, updated_at = now() WHERE id = $1",
        )
        .bind(job.id.as_uuid())
        .bind(&worker)
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if job.status != JobStatus::Processing || worker != job.worker_id {
            self.publish(JobEvent::status(job.id, JobStatus::Processing, None))
                .await;
        }
        Ok(Recorded::changed(&job, JobStatus::Processing))
    }

    /// The delivery attempt Redis has on record for a job (it counts claims), for reports
    /// that do not carry one. `None` when Redis does not know the job or does not answer.
    async fn delivery_attempt(&self, job: &job::Job) -> Option<u32> {
        let queue = self.queue(&job.queue).ok()?;
        match tokio::time::timeout(REDIS_TIMEOUT, queue.current_attempt(job.id)).await {
            Ok(Ok(0)) => None,
            Ok(Ok(a)) => Some(a),
            Ok(Err(e)) => {
                tracing::warn!(error = ?e, "reading the attempt from redis failed");
                None
            }
            Err(_) => None,
        }
    }
}
