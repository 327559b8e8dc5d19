//! `processing`: a worker started (or, after a redelivery, restarted) the job.

use gpuq_schemas::{JobEvent, JobStatus};

use super::{ignored, job, RecordError, Recorded, Recorder, Report, REDIS_TIMEOUT};

impl Recorder {
    /// Sets status `processing`, the worker id, `started_at` (the first start is kept) and
    /// `attempts` (see [`Recorder::delivery_attempt`]), in one round trip
    /// (`gpuq_start_job`, which locks the row).
    pub(super) async fn processing(&self, report: Report) -> Result<Recorded, RecordError> {
        let cb = report.callback;
        let attempt = match report.attempt {
            Some(a) => Some(a),
            // A report shape without an attempt: ask Redis, which counts claims.
            None => {
                let job = job::peek(&self.pool, cb.job_id).await?;
                self.delivery_attempt(&job).await
            }
        };
        let locked = sqlx::query_as("SELECT * FROM gpuq_start_job($1, $2, $3, $4)")
            .bind(cb.job_id.as_uuid())
            .bind(job::sources(JobStatus::Processing))
            .bind(&cb.worker_id)
            .bind(attempt.map(|a| i32::try_from(a).unwrap_or(i32::MAX)))
            .fetch_optional(&self.pool)
            .await?;
        let (job, applied) = job::Locked::into_job(locked)?;
        if !applied {
            return Ok(ignored(&job));
        }
        let worker = cb.worker_id.or_else(|| job.worker_id.clone());
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
