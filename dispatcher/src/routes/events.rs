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

use gpuq_schemas::{JobEvent, JobId, JobStatus};

use crate::auth::Caller;
use gpuq_service::ErrorBody;

use crate::routes::jobs::{parse_id, visible_job};
use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::ApiError;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream looks for news this often even without a wake-up (one may be lost).
const LOOK_ANYWAY: Duration = Duration::from_secs(5);
/// A waiting job's stream recomputes its position this often (one read-only script), and
/// sends a `position` event only when it moved by a step worth telling ([`worth_telling`]).
const POSITION_EVERY: Duration = Duration::from_secs(2);

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
    responses((status = 200, description = "text/event-stream: `status` and `progress` events of JobEvent JSON (with ids, resumable), and while the job waits, `position` events of PositionEvent JSON (no id) when its place moved by 5, by 10 % or to the front, looked at every 2 s", content_type = "text/event-stream"),
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
    let waiting = Waiting {
        queued: status == JobStatus::Queued,
        queue: job.queue,
        job_type: job.job_type,
        told: None,
    };
    tokio::spawn(async move {
        pump(state.into_inner(), id, after, fallback, waiting, tx).await;
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

/// A `position` event's data: where a waiting job stands now. It has no SSE `id`, so a
/// resumed stream's `Last-Event-ID` stays the last status or progress event's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PositionEvent {
    /// The job.
    pub job_id: uuid::Uuid,
    /// Jobs expected to start before it under the fair share.
    pub position: u64,
    /// Seconds until it is expected to finish.
    pub eta_seconds: Option<u64>,
}

/// What a stream knows of its job's wait.
struct Waiting {
    /// The job waits (its last status was `queued`).
    queued: bool,
    queue: String,
    job_type: String,
    /// The position last sent, and when it was looked at.
    told: Option<(u64, tokio::time::Instant)>,
}

impl Waiting {
    /// A `position` event, when the job waits, [`POSITION_EVERY`] has passed since the last
    /// look, and its position moved by a step worth telling.
    async fn news(&mut self, state: &AppState, id: JobId) -> Option<sse::Event> {
        if !self.queued
            || self
                .told
                .is_some_and(|(_, at)| at.elapsed() < POSITION_EVERY)
        {
            return None;
        }
        let last = self.told.map(|(p, _)| p);
        let (Some(position), eta_seconds) =
            crate::routes::jobs::forecast(state, &self.queue, &self.job_type, id).await
        else {
            return None;
        };
        let tell = worth_telling(last, position);
        let shown = if tell {
            position
        } else {
            last.unwrap_or(position)
        };
        self.told = Some((shown, tokio::time::Instant::now()));
        tell.then(|| {
            let data = PositionEvent {
                job_id: id.as_uuid(),
                position,
                eta_seconds,
            };
            sse::Data::new(serde_json::to_string(&data).unwrap_or_default())
                .event("position")
                .into()
        })
    }
}

/// Whether a waiting job's new position is news: the first one, reaching the front, or a
/// move of at least 5 places or 10 % from the one last sent. A deep backlog that drains one
/// job at a time then costs its streams an event per tenth, not one per job.
fn worth_telling(last: Option<u64>, now: u64) -> bool {
    let Some(last) = last else { return true };
    let moved = last.abs_diff(now);
    (now == 0 && last != 0) || moved >= 5 || moved * 10 >= last.max(1)
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
    mut waiting: Waiting,
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
            waiting.queued = event.status == JobStatus::Queued;
        }
        // The job had finished when the stream opened, but its stream holds no terminal
        // event (expired, or its publish failed after the commit): the row's says it.
        if fallback.is_terminal() {
            let _ = tx.send(frame(FALLBACK_ID, &fallback)).await;
            return;
        }
        if let Some(news) = waiting.news(&state, id).await {
            if tx.send(news).await.is_err() {
                return;
            }
        }
        // A client that went away ends the wait at once: its slot is freed.
        let look = if waiting.queued {
            POSITION_EVERY
        } else {
            LOOK_ANYWAY
        };
        tokio::select! {
            _ = watch.changed() => {}
            _ = tokio::time::sleep(look) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_news_at_the_front_or_after_a_move_of_five_places_or_a_tenth() {
        assert!(worth_telling(None, 40));
        assert!(!worth_telling(Some(40), 39));
        assert!(worth_telling(Some(40), 36), "a tenth");
        assert!(worth_telling(Some(400), 395), "five places");
        assert!(!worth_telling(Some(400), 396));
        assert!(worth_telling(Some(2), 1));
        assert!(worth_telling(Some(1), 0), "the front");
        assert!(!worth_telling(Some(0), 0));
    }
}
