//! `progress`: no row changes; the update only feeds the job's event stream.

use gpuq_schemas::{JobEvent, ParsedCallback};

use super::{ignored, job, RecordError, Recorded, Recorder};

impl Recorder {
    /// Publishes a progress event for a job that exists and has not finished.
    pub(super) async fn progress(&self, cb: ParsedCallback) -> Result<Recorded, RecordError> {
        let progress = cb.progress.ok_or(RecordError::MissingProgress)?;
        let job = job::peek(&self.pool, cb.job_id).await?;
        if job.status.is_terminal() {
            return Ok(ignored(&job));
        }
        let fraction = if progress.fraction.is_finite() {
            progress.fraction
        } else {
            0.0
        };
        self.publish(JobEvent::progress(job.id, fraction, progress.message))
            .await;
        Ok(Recorded {
            run_seconds: None,
            ..Recorded::changed(&job, job.status)
        })
    }
}
