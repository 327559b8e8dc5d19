//! Publishing job events from the dispatcher (queued, cancelled, requeued, expired).

use gpuq_schemas::{JobEvent, JobId, JobStatus};

use crate::jobs_db::{START_DEADLINE_EXCEEDED, START_DEADLINE_MESSAGE};
use crate::state::AppState;

/// The `failed` event of a job no worker started by its deadline.
pub fn start_deadline_exceeded(id: JobId) -> JobEvent {
    JobEvent {
        code: Some(START_DEADLINE_EXCEEDED.into()),
        ..JobEvent::status(id, JobStatus::Failed, Some(START_DEADLINE_MESSAGE.into()))
    }
}

/// Publishes `event` on its job's stream. Best effort: a lost event never fails the
/// request that caused it (the job row is the truth; SSE readers fall back to it).
pub async fn publish(state: &AppState, event: JobEvent) {
    let mut conn = state.redis.clone();
    if let Err(e) = gpuq_queue::publish_event(&mut conn, &state.namespace, &event).await {
        tracing::warn!(job_id = %event.job_id, error = ?e, "could not publish job event");
    }
}
