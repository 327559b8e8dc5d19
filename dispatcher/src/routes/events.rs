//! `GET /v1/jobs/{id}/events`: Server-Sent Events with every status change and progress
//! update of one job, resumable with `Last-Event-ID`, a keep-alive comment every 15 s, and
//! closed after the terminal event.

use std::time::Duration;

use actix_web::{web, HttpRequest, Responder};
use actix_web_lab::sse;
use tokio::sync::mpsc;

use gpuq_schemas::{JobEvent, JobId};

use crate::auth::Caller;
use gpuq_service::ErrorBody;

use crate::routes::jobs::{parse_id, visible_job};
use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::ApiError;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long one blocking read waits before checking that the client is still there.
const BLOCK: Duration = Duration::from_secs(10);

/// Streams the job's events.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "job id"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (`<ms>-<seq>`); others start from the beginning")),
    responses((status = 200, description = "text/event-stream of JobEvent JSON", content_type = "text/event-stream"),
        (status = 404, description = "no such job, or not yours", body = ErrorBody),
        Unauthorized, Unavailable, Internal))]
pub async fn job_events(
    req: HttpRequest,
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<impl Responder, ApiError> {
    let id = parse_id(&path)?;
    let job = visible_job(&state, &caller, id).await?;
    let status = job.status;
    let after = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_stream_id(v))
        .unwrap_or("0")
        .to_owned();
    let (tx, rx) = mpsc::channel::<sse::Event>(16);
    let fallback = JobEvent::status(id, status, job.error_message.clone());
    tokio::spawn(pump(state.into_inner(), id, after, fallback, tx));
    Ok(sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(KEEP_ALIVE)
        .with_retry_duration(Duration::from_secs(2)))
}

/// A Redis stream id: `<ms>-<seq>`.
fn is_stream_id(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}

fn frame(id: &str, event: &JobEvent) -> sse::Event {
    let data = serde_json::to_string(event).unwrap_or_default();
    let kind = match event.kind {
        gpuq_schemas::JobEventKind::Status => "status",
        gpuq_schemas::JobEventKind::Progress => "progress",
    };
    sse::Data::new(data).id(id).event(kind).into()
}

/// Copies events from Redis to the client until the terminal event or a disconnect.
async fn pump(
    state: std::sync::Arc<AppState>,
    id: JobId,
    mut after: String,
    fallback: JobEvent,
    tx: mpsc::Sender<sse::Event>,
) {
    let mut conn = match state.redis_target.blocking_connection().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(job_id = %id, error = ?e, "no redis connection for event stream");
            return;
        }
    };
    // A job that finished before its stream was read (or whose stream expired) still gets
    // its terminal event, from the row.
    let mut first = true;
    loop {
        let block = if first { Duration::ZERO } else { BLOCK };
        let events =
            match gpuq_queue::read_events(&mut conn, &state.namespace, id, &after, block).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(job_id = %id, error = ?e, "event stream read failed");
                    return;
                }
            };
        if first && events.is_empty() && fallback.is_terminal() {
            let _ = tx.send(frame("0-1", &fallback)).await;
            return;
        }
        first = false;
        for (entry_id, event) in events {
            if tx.send(frame(&entry_id, &event)).await.is_err() {
                return;
            }
            after = entry_id;
            if event.is_terminal() {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
