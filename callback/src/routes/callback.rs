//! `POST /v1/callback` (alias `POST /functions/v1/job-callback`): a worker reports on a job.
//!
//! Order matters: cap the body, verify the signature over the raw bytes, then parse, then
//! record. An unsigned or stale callback is refused before its JSON is even read.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use gpuq_schemas::callback::{is_probe, CallbackParseError};
use gpuq_schemas::signature::{SignatureError, SIGNATURE_HEADER};
use gpuq_schemas::{CallbackShape, ParsedCallback};
use gpuq_service::body::{check_json_media_type, read_limited, BodyError};
use gpuq_service::ApiError;
use serde::Serialize;

use crate::record::{RecordError, Recorded, Sight};
use crate::startup::AppState;

/// Why a callback was refused. Each maps to one status and code; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The body is too large, late, unreadable or declared as something else than JSON.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Missing, malformed, wrong or stale signature.
    #[error("invalid callback signature")]
    Unauthorized(#[source] SignatureError),
    /// Not a callback in any accepted shape.
    #[error(transparent)]
    InvalidPayload(#[from] CallbackParseError),
    /// The callback could not be recorded.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The same signed request is being applied right now; a retry (signed afresh) is not.
    #[error("the same signed request is being applied; retry")]
    Pending,
}

impl CallbackError {
    /// The answer: gpuq's one error body, with the code this refusal deserves.
    fn answer(&self) -> ApiError {
        use RecordError as R;
        let refused = |status, code| ApiError::refused(status, code, self.to_string());
        match self {
            Self::Body(e) => e.clone().into(),
            Self::Unauthorized(_) => refused(StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::InvalidPayload(CallbackParseError::Unstorable(_)) => {
                ApiError::bad_request("unstorable_text", self.to_string())
            }
            Self::InvalidPayload(_) | Self::Record(R::MissingProgress) => {
                ApiError::bad_request("invalid_payload", self.to_string())
            }
            Self::Record(R::JobNotFound) => refused(StatusCode::NOT_FOUND, "job_not_found"),
            Self::Record(R::Output(e)) => refused(StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            Self::Record(R::StoragePathInUse) => {
                refused(StatusCode::CONFLICT, "storage_path_in_use")
            }
            Self::Record(R::Redis(_)) => ApiError::Unavailable("queue unavailable".into()),
            Self::Pending => ApiError::Unavailable(self.to_string()),
            Self::Record(R::Database(e)) if gpuq_service::error::is_unavailable(e) => {
                ApiError::Unavailable("database unavailable".into())
            }
            Self::Record(R::Database(_) | R::Corrupt(_)) => {
                ApiError::Internal(anyhow::anyhow!("{}", cause_chain(self)))
            }
        }
    }
}

/// `error: cause: cause...`, for logs.
fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl ResponseError for CallbackError {
    fn status_code(&self) -> StatusCode {
        self.answer().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let answer = self.answer();
        let status = answer.status_code();
        // A 500's cause is logged by `ApiError` itself.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %cause_chain(self), "callback failed");
        } else if status.is_client_error() {
            tracing::warn!(error = %cause_chain(self), %status, "callback refused");
        }
        answer.error_response()
    }
}

/// The success answer. `ignored` says the report changed nothing, `reason` why.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    success: bool,
    job_id: String,
    status: &'static str,
    ignored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// The answer to a probe: the URL and the signature are right.
#[derive(Serialize)]
struct ProbeAnswer {
    success: bool,
    probe: bool,
}

/// What a request turned out to be.
enum Handled {
    Probe,
    Report(Recorded),
}

/// `POST /v1/callback`: authenticates, parses and records one callback. A body declared
/// as something else than JSON is refused (415); one with no `Content-Type` is read.
#[tracing::instrument(
    name = "callback",
    skip_all,
    fields(job_id = tracing::field::Empty, reported = tracing::field::Empty, key = tracing::field::Empty)
)]
pub async fn callback(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, CallbackError> {
    answer(
        handle(req, payload, &state, MediaType::JsonOrUndeclared).await,
        &state,
    )
}

/// `POST /functions/v1/job-callback`, the replaced edge function's path: as
/// [`callback`], whatever `Content-Type` the body declares. Workers written for the old
/// function sent JSON as text (a `fetch` with a string body says `text/plain`); refusing
/// them would lose their results, and the signature already proves the bytes.
#[tracing::instrument(
    name = "callback",
    skip_all,
    fields(job_id = tracing::field::Empty, reported = tracing::field::Empty, key = tracing::field::Empty)
)]
pub async fn legacy_callback(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, CallbackError> {
    answer(handle(req, payload, &state, MediaType::Any).await, &state)
}

/// Which declared media types a route reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MediaType {
    JsonOrUndeclared,
    Any,
}

fn answer(
    result: Result<Handled, CallbackError>,
    state: &AppState,
) -> Result<HttpResponse, CallbackError> {
    let recorded = match result {
        Ok(Handled::Probe) => {
            return Ok(HttpResponse::Ok().json(ProbeAnswer {
                success: true,
                probe: true,
            }))
        }
        Ok(Handled::Report(recorded)) => recorded,
        Err(e) => {
            state.metrics.rejected(e.answer().code());
            return Err(e);
        }
    };
    state.metrics.recorded(&recorded);
    Ok(HttpResponse::Ok().json(Answer {
        success: true,
        job_id: recorded.job_id.to_string(),
        status: recorded.status.as_str(),
        ignored: recorded.ignored.is_some(),
        reason: recorded.ignored.map(|why| why.reason()),
    }))
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: &AppState,
    media_type: MediaType,
) -> Result<Handled, CallbackError> {
    if media_type == MediaType::JsonOrUndeclared {
        check_json_media_type(&req, false)?;
    }
    let body = read_limited(&req, payload, state.max_body_bytes, state.body_timeout).await?;
    let verified = state
        .verifier
        .verify(&req, &body)
        .map_err(CallbackError::Unauthorized)?;
    let key = verified.key;
    if is_probe(&body) {
        tracing::Span::current().record("key", key);
        return Ok(Handled::Probe);
    }
    let callback = ParsedCallback::from_slice(&body)?;
    if !verified.timestamped && callback.shape != CallbackShape::Legacy {
        // Only workers that cannot be changed may sign without a timestamp.
        return Err(CallbackError::Unauthorized(SignatureError::Malformed));
    }
    let span = tracing::Span::current();
    span.record("job_id", tracing::field::display(callback.job_id));
    span.record("reported", tracing::field::debug(callback.status));
    span.record("key", key);
    // `verify` succeeded, so the header is there.
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let recorder = &state.recorder;
    let remember = if verified.timestamped {
        state.replay_memory
    } else {
        crate::configuration::LEGACY_REPLAY_MEMORY
    };
    match recorder.first_sight(signature, remember).await? {
        Sight::First => {}
        Sight::Done => {
            tracing::warn!("a signed callback was sent again; ignored");
            return Ok(Handled::Report(recorder.replayed(callback.job_id).await?));
        }
        Sight::Pending => return Err(CallbackError::Pending),
    }
    let recorded = recorder.record(callback).await;
    match &recorded {
        Ok(_) => recorder.applied(signature),
        Err(_) => recorder.forget_sight(signature).await,
    }
    Ok(Handled::Report(recorded?))
}
