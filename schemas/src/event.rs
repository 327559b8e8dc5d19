//! [`JobEvent`]: one entry of a job's event stream, as the SSE endpoint sends it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{JobId, JobStatus};

/// The webhook events a job's changes are delivered as (`job.<event>`), and the names an
/// endpoint subscribes to: the dispatcher validates subscriptions against them, the
/// database's triggers write them (ADR 0016).
pub const WEBHOOK_EVENTS: [&str; 6] = [
    "queued",
    "started",
    "progress",
    "completed",
    "failed",
    "cancelled",
];

/// A status change or a progress update of one job. Published by the service that made the
/// change (dispatcher: queued, cancelled; callback: processing, progress, completed,
/// failed, queued again for a retry) and read by `GET /v1/jobs/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    /// The job.
    pub job_id: JobId,
    /// `status` for a status change, `progress` for a progress update.
    pub kind: JobEventKind,
    /// The job's status after the event.
    pub status: JobStatus,
    /// 0.0 to 1.0, for progress updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// A human-readable note (progress message, error message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why the job failed, for machines, when the queue decided it
    /// (`start_deadline_exceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// The two kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobEventKind {
    /// The status changed.
    Status,
    /// Progress within `processing`.
    Progress,
}

impl JobEvent {
    /// A status-change event stamped now.
    pub fn status(job_id: JobId, status: JobStatus, message: Option<String>) -> Self {
        Self {
            job_id,
            kind: JobEventKind::Status,
            status,
            progress: None,
            message,
            code: None,
            at: Utc::now(),
        }
    }

    /// A progress event stamped now.
    pub fn progress(job_id: JobId, fraction: f64, message: Option<String>) -> Self {
        Self {
            job_id,
            kind: JobEventKind::Progress,
            status: JobStatus::Processing,
            progress: Some(fraction.clamp(0.0, 1.0)),
            message,
            code: None,
            at: Utc::now(),
        }
    }

    /// True for the event after which nothing more will happen.
    pub fn is_terminal(&self) -> bool {
        self.kind == JobEventKind::Status && self.status.is_terminal()
    }
}
