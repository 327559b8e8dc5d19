//! `POST /v1/callback` (alias `POST /functions/v1/job-callback`): a worker reports on a job.
//!
//! Order matters: cap the body, verify the signature over the raw bytes, then parse, then
//! record. An unsigned or stale callback is refused before its JSON is even read.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use gpuq_schemas::callback::CallbackParseError;
use gpuq_schemas::signature::SignatureError;
use gpuq_schemas::ParsedCallback;
use serde::{Deserialize, Serialize};

use crate::body::{read_limited, BodyError};
use crate::error::{cause_chain, error_response};
use crate::record::{RecordError, Report};
use crate::startup::AppState;

/// Why a callback was refused. Each maps to one status and code; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The body is too large or could not be read.
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
}

impl CallbackError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use RecordError as R;
        match self {
            Self::Body(BodyError::TooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            Self::Body(BodyError::TimedOut(_)) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Body(BodyError::Read(_)) => (StatusCode::BAD_REQUEST, "unreadable_body"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::InvalidPayload(_) | Self::Record(R::MissingProgress) => {
                (StatusCode::BAD_REQUEST, "invalid_payload")
            }
            Self::Record(R::JobNotFound) => (StatusCode::NOT_FOUND, "job_not_found"),
            Self::Record(R::Output(e)) => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            Self::Record(R::StoragePathInUse) => (StatusCode::CONFLICT, "storage_path_in_use"),
            Self::Record(R::Redis(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable")
            }
            Self::Record(R::Database(e)) if is_unavailable(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable")
            }
            Self::Record(R::Database(_) | R::Corrupt(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
            }
        }
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

impl ResponseError for CallbackError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %cause_chain(self), "callback failed");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                "a dependency is unavailable; retry later".to_owned()
            } else {
                "internal error".to_owned()
            }
        } else {
            tracing::warn!(error = %cause_chain(self), %status, "callback refused");
            self.to_string()
        };
        error_response(status, code, &message)
    }
}

/// The success answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    success: bool,
    job_id: String,
    status: &'static str,
    ignored: bool,
}

/// The canonical shape's `attempt`; legacy shapes refuse unknown fields, so a body that
/// parsed and has one is canonical.
#[derive(Deserialize)]
struct AttemptField {
    attempt: Option<u32>,
}

/// Authenticates, parses and records one callback.
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
    let result = handle(req, payload, &state).await;
    match &result {
        Ok(recorded) => state.metrics.recorded(recorded),
        Err(e) => state.metrics.rejected(e.status_and_code().1),
    }
    let recorded = result?;
    Ok(HttpResponse::Ok().json(Answer {
        success: true,
        job_id: recorded.job_id.to_string(),
        status: recorded.status.as_str(),
        ignored: recorded.ignored,
    }))
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<crate::record::Recorded, CallbackError> {
    let body = read_limited(&req, payload, state.max_body_bytes, state.body_timeout).await?;
    let key = state
        .verifier
        .verify(&req, &body)
        .map_err(CallbackError::Unauthorized)?;
    let callback = ParsedCallback::from_slice(&body)?;
    let attempt = serde_json::from_slice::<AttemptField>(&body)
        .ok()
        .and_then(|a| a.attempt);
    let span = tracing::Span::current();
    span.record("job_id", tracing::field::display(callback.job_id));
    span.record("reported", tracing::field::debug(callback.status));
    span.record("key", key);
    Ok(state.recorder.record(Report { callback, attempt }).await?)
}
