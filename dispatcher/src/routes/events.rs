//! `GET /v1/jobs/{id}/events`: Server-Sent Events with every status change and progress
//! update of one job, resumable with `Last-Event-ID`, a keep-alive comment every 15 s, and
//! closed after the terminal event. A stream resumed after its terminal event answers 204
//! (an `EventSource` then stops reconnecting); a `Last-Event-ID` ahead of the stream (or of
//! an expired one) starts from the beginning instead of waiting for events that will never
//! come. Open streams are bounded per user and per process ([`crate::streams`]).
//!
//! A browser's `EventSource` cannot send `Authorization`; it opens the stream with a stream
//! token instead (`?access_token=`, see [`crate::auth::StreamTokens`]), from the enqueue
//! answer or `POST /v1/jobs/{id}/stream-token`.

use std::time::Duration;

use actix_web::{dev::Payload, web, Either, FromRequest, HttpRequest, HttpResponse, Responder};
use actix_web_lab::sse;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use gpuq_schemas::{JobEvent, JobId};

use crate::auth::Caller;
use gpuq_service::ErrorBody;

use crate::routes::jobs::{parse_id, visible_job};
use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::ApiError;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream looks for news this often even without a wake-up (one may be lost).
const LOOK_ANYWAY: Duration = Duration::from_secs(5);

/// `?access_token=`: a stream token, for clients that cannot send `Authorization`.
#[derive(Deserialize)]
struct StreamQuery {
    access_token: Option<String>,
}

/// The caller: from `Authorization` when sent, else from a stream token for job `id`.
async fn stream_caller(req: &HttpRequest, state: &AppState, id: JobId) -> Result<Caller, ApiError> {
    let token = web::Query::<StreamQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().access_token);
    match token {
        Some(token)
            if !req
                .headers()
                .contains_key(actix_web::http::header::AUTHORIZATION) =>
        {
            Ok(Caller {
                user: Some(state.auth.streams.verify(&token, id)?),
                is_admin: false,
                tenant: None,
            })
        }
        _ => Caller::from_request(req, &mut Payload::None).await,
    }
}

/// Streams the job's events.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", security(("bearer" = []), ()),
    params(("id" = uuid::Uuid, Path, description = "job id"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (`<ms>-<seq>`); others start from the beginning"),
        ("access_token" = Option<String>, Query, description = "a stream token for this job (from the enqueue answer or POST /v1/jobs/{id}/stream-token), for clients that cannot send Authorization")),
    responses((status = 200, description = "text/event-stream of JobEvent JSON", content_type = "text/event-stream"),
        (status = 204, description = "resumed after the terminal event: nothing more will come"),
        (status = 404, description = "no such job, or not yours", body = ErrorBody),
        (status = 429, description = "too many open event streams (per user or on this instance)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        Unauthorized, Unavailable, Internal))]
pub async fn job_events(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<impl Responder, ApiError> {
    let id = parse_id(&path)?;
    let caller = stream_caller(&req, &state, id).await?;
    let job = visible_job(&state, &caller, id).await?;
    let status = job.status;
    let resume_from = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(stream_id);
    if status.is_terminal() && resumed_after_the_end(&state, id, resume_from).await? {
        return Ok(Either::Left(HttpResponse::NoContent().finish()));
    }
    let after = match resume_from {
        Some(from) => resume_point(&state, id, from).await?,
        None => "0".to_owned(),
    };
    let slot = state.streams.acquire(caller.user)?;
    let (tx, rx) = mpsc::channel::<sse::Event>(16);
    let fallback = JobEvent::status(id, status, job.error_message.clone());
    tokio::spawn(async move {
        pump(state.into_inner(), id, after, fallback, tx).await;
        drop(slot);
    });
    Ok(Either::Right(
        sse::Sse::from_infallible_receiver(rx)
            .with_keep_alive(KEEP_ALIVE)
            .with_retry_duration(Duration::from_secs(2)),
    ))
}

/// `POST /v1/jobs/{id}/stream-token`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTokenAnswer {
    /// Always true.
    pub success: bool,
    /// The job.
    pub job_id: uuid::Uuid,
    /// Opens the job's event stream as `?access_token=`.
    pub token: String,
    /// When it stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The stream's path with the token: `new EventSource(base + eventsUrl)`.
    pub events_url: String,
}

/// Mints a stream token for the job's owner (the enqueue answer carries one; this renews it).
#[utoipa::path(post, path = "/v1/jobs/{id}/stream-token", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "job id")),
    responses((status = 200, description = "a token that opens this job's event stream", body = StreamTokenAnswer),
        (status = 404, description = "no such job, or not yours", body = ErrorBody),
        Unauthorized, Unavailable, Internal))]
pub async fn stream_token(
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let job = visible_job(&state, &caller, id).await?;
    let minted = state.auth.streams.mint(job.user_id.into(), id)?;
    Ok(HttpResponse::Ok().json(StreamTokenAnswer {
        success: true,
        job_id: id.as_uuid(),
        events_url: format!("/v1/jobs/{id}/events?access_token={}", minted.token),
        token: minted.token,
        expires_at: minted.expires_at,
    }))
}

/// The id of the event a finished job's stream ends with when its own events are gone (or
/// never got written): a real entry id is never `0-1`.
const FALLBACK_ID: &str = "0-1";

/// Whether a client resuming a finished job's stream at `from` already has its terminal
/// event: the row-based one ([`FALLBACK_ID`]), or a stream entry that is terminal.
async fn resumed_after_the_end(
    state: &AppState,
    id: JobId,
    from: Option<(u64, u64)>,
) -> Result<bool, ApiError> {
    let Some(from) = from else { return Ok(false) };
    if from == (0, 1) {
        return Ok(true);
    }
    let unavailable =
        |e: gpuq_queue::QueueError| ApiError::Unavailable(format!("event stream: {e}"));
    let mut conn = state.redis.clone();
    let at = format!("{}-{}", from.0, from.1);
    let seen = gpuq_queue::read_event(&mut conn, &state.namespace, id, &at)
        .await
        .map_err(unavailable)?;
    Ok(seen.is_some_and(|e| e.is_terminal()))
}

/// Where a resumed stream goes on: after `from` if the stream has reached it, else from
/// the beginning (an id ahead of the stream, or a stream that expired, would otherwise
/// keep the client waiting for events that never come).
async fn resume_point(state: &AppState, id: JobId, from: (u64, u64)) -> Result<String, ApiError> {
    let mut conn = state.redis.clone();
    let last = gpuq_queue::last_event_id(&mut conn, &state.namespace, id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("event stream: {e}")))?;
    Ok(match last.as_deref().and_then(stream_id) {
        Some(last) if from <= last => format!("{}-{}", from.0, from.1),
        _ => "0".to_owned(),
    })
}

/// A Redis stream id `<ms>-<seq>`, as numbers (their order is the stream's).
fn stream_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.trim().split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn frame(id: &str, event: &JobEvent) -> sse::Event {
    let data = serde_json::to_string(event).unwrap_or_default();
    let kind = match event.kind {
        gpuq_schemas::JobEventKind::Status => "status",
        gpuq_schemas::JobEventKind::Progress => "progress",
    };
    sse::Data::new(data).id(id).event(kind).into()
}

/// Copies events from Redis to the client until the terminal event or a disconnect. Reads
/// on the shared connection, never blocking on Redis: the hub says when to look (and the
/// stream looks every [`LOOK_ANYWAY`] in case a wake-up was lost).
async fn pump(
    state: std::sync::Arc<AppState>,
    id: JobId,
    mut after: String,
    fallback: JobEvent,
    tx: mpsc::Sender<sse::Event>,
) {
    let mut watch = state.events.watch(id);
    let mut conn = state.redis.clone();
    loop {
        watch.seen();
        let events =
            match gpuq_queue::read_events(&mut conn, &state.namespace, id, &after, Duration::ZERO)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(job_id = %id, error = ?e, "event stream read failed");
                    return;
                }
            };
        for (entry_id, event) in events {
            if tx.send(frame(&entry_id, &event)).await.is_err() {
                return;
            }
            after = entry_id;
            if event.is_terminal() {
                return;
            }
        }
        // The job had finished when the stream opened, but its stream holds no terminal
        // event (expired, or its publish failed after the commit): the row's says it.
        if fallback.is_terminal() {
            let _ = tx.send(frame(FALLBACK_ID, &fallback)).await;
            return;
        }
        // A client that went away ends the wait at once: its slot is freed.
        tokio::select! {
            _ = watch.changed() => {}
            _ = tokio::time::sleep(LOOK_ANYWAY) => {}
            _ = tx.closed() => return,
        }
    }
}
