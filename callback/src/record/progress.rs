//! `progress`: no row changes; the update only feeds the job's event stream, and only
//! when it comes from the job's current claim.

use gpuq_schemas::{JobEvent, ParsedCallback};

use super::{ignored, job, RecordError, Recorded, Recorder, Stale};

/// Longest progress message passed on, in characters; the rest is cut.
pub const MAX_PROGRESS_MESSAGE_CHARS: usize = 500;

impl Recorder {
    /// Publishes a progress event for a job that is in flight under the report's claim.
    /// The fraction is clamped to [0, 1] (anything not a number is 0) and the message cut
    /// to [`MAX_PROGRESS_MESSAGE_CHARS`].
    pub(super) async fn progress(&self, cb: ParsedCallback) -> Result<Recorded, RecordError> {
        let progress = cb.progress.clone().ok_or(RecordError::MissingProgress)?;
        let job = self.peek(cb.job_id).await?;
        if job.status.is_terminal() {
            return Ok(ignored(&job, Stale::Finished));
        }
        if let Err(stale) = self.current_claim(&self.queue(&job.queue)?, &cb).await? {
            return Ok(ignored(&job, stale));
        }
        let fraction = if progress.fraction.is_nan() {
            0.0
        } else {
            progress.fraction.clamp(0.0, 1.0)
        };
        let message = progress
            .message
            .map(|m| m.chars().take(MAX_PROGRESS_MESSAGE_CHARS).collect());
        self.progress_webhook(&job, fraction, message.as_deref())
            .await;
        self.publish(JobEvent::progress(job.id, fraction, message))
            .await;
        Ok(Recorded {
            run_seconds: None,
            ..Recorded::changed(&job, job.status)
        })
    }

    /// Writes a `progress` event to the webhook outbox for the endpoints that want one
    /// (throttled in SQL: `gpuq_webhook_progress`). Best effort, like the stream event:
    /// progress is not state, and the next report writes the next one.
    async fn progress_webhook(&self, job: &job::Job, fraction: f64, message: Option<&str>) {
        // The message holds no NUL: reports with text PostgreSQL cannot store were refused.
        let written =
            sqlx::query("SELECT gpuq_webhook_progress($1, $2, $3, make_interval(secs => $4))")
                .bind(job.id.as_uuid())
                .bind(fraction)
                .bind(message)
                .bind(self.progress_webhooks_every.as_secs_f64())
                .execute(&self.pool)
                .await;
        if let Err(e) = written {
            tracing::warn!(job_id = %job.id, error = %e, "progress webhook not written");
        }
    }
}
