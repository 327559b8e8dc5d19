//! `processing`: the worker holding the job's current claim started (or, after a
//! redelivery, restarted) it.

use gpuq_schemas::{JobEvent, JobStatus, ParsedCallback};

use super::{ignored, job, RecordError, Recorded, Recorder, Stale};

impl Recorder {
    /// Sets status `processing`, the worker id, `started_at` (the first start is kept) and
    /// `attempts` (the claim's attempt, from Redis) and opens the attempt's metering row
    /// (`job_attempts`), in one round trip (`gpuq_start_job`,
    /// which locks the row). A report about another claim changes nothing.
    pub(super) async fn processing(&self, cb: ParsedCallback) -> Result<Recorded, RecordError> {
        let job = job::peek(&self.pool, cb.job_id).await?;
        if job.status.is_terminal() {
            return Ok(ignored(&job, Stale::Finished));
        }
        let holding = match self.current_claim(&self.queue(&job.queue)?, &cb).await? {
            Ok(holding) => holding,
            Err(stale) => return Ok(ignored(&job, stale)),
        };
        let locked = sqlx::query_as("SELECT * FROM gpuq_start_job($1, $2, $3, $4, $5)")
            .bind(cb.job_id.as_uuid())
            .bind(job::sources(JobStatus::Processing))
            .bind(&holding.consumer)
            .bind(i32::try_from(holding.fence.attempt).unwrap_or(i32::MAX))
            .bind(&cb.gpu)
            .fetch_optional(&self.pool)
            .await?;
        let (job, applied) = job::Locked::into_job(locked)?;
        if !applied {
            return Ok(ignored(&job, Stale::Finished));
        }
        if job.status != JobStatus::Processing
            || job.worker_id.as_deref() != Some(holding.consumer.as_str())
        {
            self.publish(JobEvent::status(job.id, JobStatus::Processing, None))
                .await;
        }
        Ok(Recorded::changed(&job, JobStatus::Processing))
    }
}
