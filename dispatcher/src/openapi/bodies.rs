//! Schemas of the success bodies, mirroring the JSON the handlers write (schemathesis checks
//! every response against them: `deploy/tests/schemathesis/run.sh`).

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::jobs_db::JobRecord;

/// `GET /v1/jobs/{id}`.
#[derive(ToSchema)]
pub struct JobAnswer {
    success: bool,
    job: JobRecord,
    /// One per output image, by index.
    images: Vec<OutputImage>,
    /// One per output video, by index.
    videos: Vec<OutputVideo>,
}

/// An `images` row.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OutputImage {
    index: i32,
    bucket: String,
    /// Storage key, `<user_id>/...`.
    path: String,
    thumbnail_path: Option<String>,
    seed: Option<i64>,
    width: Option<i32>,
    height: Option<i32>,
}

/// A `videos` row.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OutputVideo {
    index: i32,
    bucket: String,
    /// Storage key, `<user_id>/...`.
    path: String,
    thumbnail_path: Option<String>,
    seed: Option<i64>,
    duration_seconds: Option<f64>,
}

/// `POST /v1/jobs/{id}/cancel`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CancelAnswer {
    success: bool,
    job_id: Uuid,
    #[schema(example = "cancelled")]
    status: String,
    /// A worker held it; it learns at its next heartbeat.
    was_running: bool,
}

/// `GET /v1/job-types`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct JobTypesAnswer {
    success: bool,
    job_types: Vec<JobTypeSpec>,
}

/// One catalog row.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct JobTypeSpec {
    #[schema(example = "sdxl_image_fast")]
    job_type: String,
    queue: String,
    model_variant: String,
    #[schema(pattern = "^(image|video)$")]
    kind: String,
    credits: u32,
    typical_seconds: u32,
    max_attempts: u32,
    enhance_prompt: bool,
    defaults: Defaults,
    allowed_num_images: Vec<u32>,
}

/// A job type's generation defaults (snake_case, as workers read them).
#[derive(ToSchema)]
pub struct Defaults {
    steps: u32,
    guidance: f32,
    width: u32,
    height: u32,
    frames: u32,
    num_images: u32,
}

/// `GET /admin/queues`.
#[derive(ToSchema)]
pub struct QueuesAnswer {
    success: bool,
    queues: Vec<QueueDepth>,
}

/// One queue's counters.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct QueueDepth {
    queue: String,
    waiting: Waiting,
    in_flight: u64,
    delayed: u64,
    dead: u64,
    live_workers: u64,
    oldest_wait_ms: OldestWait,
}

/// Waiting jobs per lane.
#[derive(ToSchema)]
pub struct Waiting {
    high: u64,
    normal: u64,
    total: u64,
}

/// Age of each lane's next job, ms; null when the lane is empty.
#[derive(ToSchema)]
pub struct OldestWait {
    high: Option<u64>,
    normal: Option<u64>,
}

/// `GET /admin/queues/{queue}/dead`.
#[derive(ToSchema)]
pub struct DeadJobsAnswer {
    success: bool,
    queue: String,
    jobs: Vec<DeadJob>,
}

/// A dead-lettered job.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DeadJob {
    job_id: Uuid,
    /// ms since the epoch.
    died_at_ms: u64,
    error: Option<String>,
    /// The queue envelope; null when unreadable.
    #[schema(value_type = Option<Object>)]
    envelope: Value,
}

/// `POST /admin/jobs/{id}/requeue`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RequeueAnswer {
    success: bool,
    job_id: Uuid,
    #[schema(example = "queued")]
    status: String,
}

/// `POST /admin/jobs/{id}/discard`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DiscardAnswer {
    success: bool,
    job_id: Uuid,
    discarded: bool,
}

/// `GET /admin/workers`.
#[derive(ToSchema)]
pub struct WorkersAnswer {
    success: bool,
    workers: Vec<Worker>,
}

/// A live consumer and the jobs it holds.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Worker {
    queue: String,
    consumer: String,
    last_seen_ms_ago: u64,
    jobs: Vec<HeldJob>,
}

/// A job a worker holds.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct HeldJob {
    job_id: Uuid,
    attempt: u32,
    held_for_ms: u64,
    lease_expires_in_ms: u64,
}

/// `GET /admin/failures`.
#[derive(ToSchema)]
pub struct FailuresAnswer {
    success: bool,
    jobs: Vec<Failure>,
}

/// A failed job.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Failure {
    job_id: Uuid,
    job_type: String,
    queue: String,
    error_message: Option<String>,
    attempts: i32,
    completed_at: Option<DateTime<Utc>>,
}
