//! `completed`: the outputs become `images` or `videos` rows, the attempt's metering row
//! ends (and the job's credit hold settles, by trigger) and the job finishes, in one
//! transaction (`gpuq_complete_job`, which locks the row), shared with the completions
//! that arrived meanwhile ([`super::batches`]); then the job leaves Redis and the
//! change is published.

use gpuq_schemas::{JobEvent, JobKind, JobStatus, ParsedCallback};
use serde::Serialize;
use serde_json::Value;

use super::batches::Completion;
use super::claim::claimed_at;
use super::outputs::{self, OutputRow};
use super::{ignored, job, RecordError, Recorded, Recorder, Stale};

impl Recorder {
    /// Records the outputs and finishes the job. A report about another claim changes
    /// nothing; a rejected output path fails the whole callback before anything is written.
    pub(super) async fn completed(&self, cb: ParsedCallback) -> Result<Recorded, RecordError> {
        // The rows are built from the job's owner, type and prompt, which never change, so
        // they are read without a lock; the status is checked again under the lock.
        let job = self.peek(cb.job_id).await?;
        if !job.status.can_transition(JobStatus::Completed) {
            return Ok(self.already_finished(&job).await);
        }
        // The claim is checked before the rows are written: a job handed to another worker
        // since (this claim's lease ran out) is that worker's to finish. A claim that ends
        // between the check and the commit still finishes the job with real outputs, and
        // the next holder's report is then `ignored` (first terminal report wins).
        let holding = match self.current_claim(&self.queue(&job.queue)?, &cb).await? {
            Ok(holding) => holding,
            Err(stale) => return Ok(ignored(&job, stale)),
        };
        let rows = outputs::build(&job, &cb.outputs, &self.storage)?;
        let rows: Vec<RowJson<'_>> = rows.iter().map(RowJson::from).collect();
        let outputs = serde_json::to_value(&rows)
            .map_err(|e| RecordError::Corrupt(format!("output rows: {e}")))?;
        let kind = match job.kind() {
            JobKind::Image => "image",
            JobKind::Video => "video",
        };
        let attempt = i32::try_from(holding.fence.attempt.max(1)).unwrap_or(i32::MAX);
        // The claim's time is the start of a job whose worker never reported `processing`.
        let claimed_at = claimed_at(holding.since_ms, &job);
        let completion = Completion {
            id: job.id.as_uuid(),
            from: job::sources(JobStatus::Completed),
            kind,
            outputs,
            enhanced_prompt: cb.enhanced_prompt.clone(),
            worker: holding.consumer.clone(),
            attempt,
            claimed_at,
            generation_seconds: cb.generation_seconds,
            gpu: cb.gpu.clone(),
        };
        let locked = self.transition(&self.completions, completion).await?;
        let gpu_seconds = locked.as_ref().and_then(|l: &job::Locked| l.gpu_seconds);
        let (job, applied) = job::Locked::into_job(locked)?;
        if !applied {
            return Ok(self.already_finished(&job).await);
        }
        tracing::info!(outputs = rows.len(), "job completed");
        self.ack(job.id, &job.queue).await;
        self.publish(JobEvent::status(job.id, JobStatus::Completed, None))
            .await;
        Ok(Recorded::changed(&job, JobStatus::Completed)
            .metered(gpu_seconds, "completed")
            .first_start(&job, claimed_at))
    }

    /// The answer for a job that finished before this report.
    async fn already_finished(&self, job: &job::Job) -> Recorded {
        if job.status == JobStatus::Completed {
            // A redelivered copy finished too: make sure Redis forgot the job.
            self.ack(job.id, &job.queue).await;
        }
        ignored(job, Stale::Finished)
    }
}

/// One output row as `gpuq_complete_job` reads it (`jsonb_to_recordset`). The row lock
/// makes a second recording impossible; the function's `ON CONFLICT` keeps it so even
/// without the lock.
#[derive(Serialize)]
struct RowJson<'a> {
    idx: i32,
    bucket: &'a str,
    storage_path: &'a str,
    thumbnail_path: Option<&'a str>,
    seed: Option<i64>,
    width: Option<i32>,
    height: Option<i32>,
    metadata: &'a Value,
    duration_seconds: Option<f64>,
}

impl<'a> From<&'a OutputRow> for RowJson<'a> {
    fn from(row: &'a OutputRow) -> Self {
        Self {
            idx: row.index,
            bucket: row.path.bucket(),
            storage_path: row.path.key(),
            thumbnail_path: row.thumbnail.as_deref(),
            seed: row.seed,
            width: row.width,
            height: row.height,
            metadata: &row.metadata,
            duration_seconds: row.duration_seconds,
        }
    }
}
