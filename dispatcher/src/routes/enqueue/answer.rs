//! [`EnqueueAnswer`]: the 202 body of an enqueue, in the shapes the replaced edge function
//! answered: v1 apps read `success`, `job`, `message`, `queueLength`, `modelVariant`,
//! `jobType`, `queue`; v2 apps read `jobId`, `status` and `queueName`.

use serde::Serialize;
use utoipa::ToSchema;

use gpuq_schemas::{JobEnvelope, JobType};

use crate::jobs_db::JobRecord;

/// The 202 answer to an enqueue. An `Idempotency-Key` replay while the first request is
/// still being enqueued carries only `success`, `job` and `message`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnqueueAnswer {
    /// Always true.
    pub success: bool,
    /// The job's row.
    pub job: JobRecord,
    /// The job's id (v2 apps read it here).
    pub job_id: uuid::Uuid,
    /// The job's status when answered (v2 apps read it here).
    pub status: gpuq_schemas::JobStatus,
    /// Human-readable.
    pub message: String,
    /// Waiting jobs in the queue, this one included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u64>,
    /// The model the worker loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_variant: Option<String>,
    /// The job's type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<JobType>,
    /// The queue it waits in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The same, under the name v2 apps read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    /// Jobs that will be served before this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Estimated seconds until it finishes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Opens this job's event stream as `?access_token=` (for a browser's `EventSource`);
    /// minted per answer, never stored with an `Idempotency-Key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_token: Option<String>,
    /// When [`Self::stream_token`] stops working (`POST /v1/jobs/{id}/stream-token` mints
    /// another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl EnqueueAnswer {
    /// A job just queued at `position` behind `waiting - 1` others.
    pub fn queued(
        env: &JobEnvelope,
        job: JobRecord,
        waiting: u64,
        position: u64,
        eta_seconds: u64,
    ) -> Self {
        Self {
            success: true,
            job_id: job.id,
            status: job.status,
            job,
            message: format!("{} job queued", env.job_type),
            queue_length: Some(waiting),
            model_variant: Some(env.job_type.spec().model_variant.to_owned()),
            job_type: Some(env.job_type),
            queue: Some(env.queue.clone()),
            queue_name: Some(env.queue.clone()),
            position: Some(position),
            eta_seconds: Some(eta_seconds),
            stream_token: None,
            stream_token_expires_at: None,
        }
    }

    /// The answer to a replayed key whose first request is still being enqueued.
    pub fn already_submitted(job: JobRecord) -> Self {
        Self {
            success: true,
            job_id: job.id,
            status: job.status,
            job,
            message: "Job already submitted with this Idempotency-Key".into(),
            queue_length: None,
            model_variant: None,
            job_type: None,
            queue: None,
            queue_name: None,
            position: None,
            eta_seconds: None,
            stream_token: None,
            stream_token_expires_at: None,
        }
    }
}
