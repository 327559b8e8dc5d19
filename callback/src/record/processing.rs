//! `processing`: the worker holding the job's current claim started (or, after a
//! redelivery, restarted) it.

use gpuq_schemas::{JobEvent, JobStatus, ParsedCallback};

use super::batches::Start;
use super::claim::claimed_at;
use super::{ignored, job, RecordError, Recorded, Recorder, Stale};

impl Recorder {
    /// Sets status `processing`, the worker id, `started_at` (the claim's time; the first
    /// start is kept) and `attempts` (the claim's attempt, from Redis) and opens the
    /// attempt's metering row (`job_attempts`), in one transaction (`gpuq_start_job`, which
    /// locks the row) shared with the starts that arrived meanwhile ([`super::batches`]). A
    /// report about another claim changes nothing.
    pub(super) async fn processing(&self, cb: ParsedCallback) -> Result<Recorded, RecordError> {
        let job = self.peek(cb.job_id).await?;
        if job.status.is_terminal() {
            return Ok(ignored(&job, Stale::Finished));
        }
        let holding = match self.current_claim(&self.queue(&job.queue)?, &cb).await? {
            Ok(holding) => holding,
            Err(stale) => return Ok(ignored(&job, stale)),
        };
        // The attempt started at its claim: the worker may report a moment after its
        // handler started (the SDK's `report_processing_after`).
        let claimed_at = claimed_at(holding.since_ms, &job);
        let start = Start {
            id: cb.job_id.as_uuid(),
            from: job::sources(JobStatus::Processing),
            worker: holding.consumer.clone(),
            attempt: i32::try_from(holding.fence.attempt).unwrap_or(i32::MAX),
            gpu: cb.gpu.clone(),
            claimed_at,
        };
        let locked = self.transition(&self.starts, start).await?;
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
        Ok(Recorded::changed(&job, JobStatus::Processing).first_start(&job, claimed_at))
    }
}
