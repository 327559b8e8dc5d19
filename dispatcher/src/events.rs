//! Publishing job events from the dispatcher (queued, cancelled, requeued).

use gpuq_schemas::JobEvent;

use crate::state::AppState;

/// Publishes `event` on its job's stream. Best effort: a lost event never fails the
/// request that caused it (the job row is the truth; SSE readers fall back to it).
pub async fn publish(state: &AppState, event: JobEvent) {
    let mut conn = state.redis.clone();
    if let Err(e) = gpuq_queue::publish_event(&mut conn, &state.namespace, &event).await {
        tracing::warn!(job_id = %event.job_id, error = ?e, "could not publish job event");
    }
}
