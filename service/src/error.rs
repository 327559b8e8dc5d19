//! [`ApiError`]: every way a request can fail, mapped to a status and the one error body
//! both services send, [`ErrorBody`] — `{ "success": false, "error": { "code", "message" } }`.
//! A 500 body never carries the cause; the log does, with its whole chain.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// The error body every endpoint of every gpuq service answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// Why.
    pub error: ErrorDetail,
}

/// Code and message of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable reason, e.g. `invalid_job_type`, `rate_limited`.
    #[schema(example = "invalid_job_type")]
    pub code: String,
    /// Human-readable reason; never internals.
    pub message: String,
    /// With `insufficient_credits` (402): the account and the price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditShortfall>,
}

/// Why a job was refused for its price: its tenant's account as it stood, and the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreditShortfall {
    /// Credits in the account.
    pub balance: i64,
    /// What the account's unfinished jobs hold.
    pub held: i64,
    /// Balance minus held: what a new job may hold.
    pub available: i64,
    /// The job's price (for a metered type, the most it may cost).
    pub price: i64,
}

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a code naming the rule and a message naming the field.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 401 for a bearer-token endpoint (answers `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 with a code.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 404, code `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 with `Allow`: the path exists, the method does not.
    #[error("method not allowed; this endpoint allows {0}")]
    MethodNotAllowed(&'static str),
    /// 409, code `conflict`: the job's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// 408: the body did not arrive within the deadline.
    #[error("request body did not arrive within {} ms", .0.as_millis())]
    RequestTimeout(Duration),
    /// 413.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415.
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// 429 with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// `rate_limited`, `too_many_active_jobs` or `queue_full`.
        code: &'static str,
        /// Human-readable reason.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Any other 4xx whose code says more than the status (`invalid_signature`,
    /// `job_not_found`, `storage_path_in_use`, a 422's rule).
    #[error("{message}")]
    Refused {
        /// A 4xx status.
        status: StatusCode,
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// 402, code `insufficient_credits`: the tenant's available credits do not cover the
    /// job's price.
    #[error("the job costs {} credits and {} are available (balance {}, held by unfinished jobs {})", .0.price, .0.available, .0.balance, .0.held)]
    InsufficientCredits(CreditShortfall),
    /// 503: Redis or PostgreSQL is unavailable; the message says which, never why.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 4xx with its own code.
    pub fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(status.is_client_error());
        Self::Refused {
            status,
            code,
            message: message.into(),
        }
    }

    /// The machine-readable code of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Forbidden { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Refused { code, .. } => code,
            Self::InsufficientCredits(_) => "insufficient_credits",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::RequestTimeout(_) => "request_timeout",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// As `From<sqlx::Error>`, for an error several requests share (a failed batch).
    pub fn from_shared_db_error(e: &sqlx::Error) -> Self {
        if is_unavailable(e) {
            tracing::error!(error = %e, "postgres unavailable");
            Self::Unavailable("database unavailable".into())
        } else {
            Self::Internal(anyhow::anyhow!("{e}"))
        }
    }
}

/// One log line for a 500's cause: its chain (`outer: inner: root`), never a backtrace
/// (`{:?}` of an `anyhow::Error` prints one when `RUST_BACKTRACE` is set: dozens of lines
/// per failed request).
pub fn cause_line(cause: &anyhow::Error) -> String {
    format!("{cause:#}")
}

/// PostgreSQL could not be reached (as opposed to refusing a query).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Self::from_shared_db_error(&e)
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<gpuq_queue::QueueError> for ApiError {
    fn from(e: gpuq_queue::QueueError) -> Self {
        match e {
            gpuq_queue::QueueError::Redis(r) => {
                tracing::error!(error = %r, "redis unavailable");
                Self::Unavailable("queue unavailable".into())
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Refused { status, .. } => *status,
            Self::InsufficientCredits(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %cause_line(cause), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::TooManyRequests { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            Self::MethodNotAllowed(allow) => {
                response.insert_header((header::ALLOW, *allow));
            }
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        let message = match self {
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        response.json(ErrorBody {
            success: false,
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                credits: match self {
                    Self::InsufficientCredits(shortfall) => Some(*shortfall),
                    _ => None,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_is_one_line_with_its_chain_and_no_backtrace() {
        let cause = anyhow::anyhow!("connection reset").context("reading jobs.metadata");
        let line = super::cause_line(&cause);
        assert_eq!(line, "reading jobs.metadata: connection reset");
        assert!(
            format!("{cause:?}").lines().count() > 1,
            "Debug is the multi-line form"
        );
    }

    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(e: &ApiError) -> serde_json::Value {
        let bytes = e.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn an_internal_error_answers_500_without_its_cause() {
        let e = ApiError::Internal(anyhow::anyhow!("password=hunter2 in a query"));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(&e);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[test]
    fn a_refusal_keeps_its_own_status_and_code() {
        let e = ApiError::refused(StatusCode::CONFLICT, "storage_path_in_use", "taken");
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
        let body = body_of(&e);
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "storage_path_in_use");
        assert_eq!(body["error"]["message"], "taken");
    }

    #[test]
    fn a_405_names_the_allowed_method() {
        let response = ApiError::MethodNotAllowed("POST").error_response();
        assert_eq!(response.headers().get(header::ALLOW).unwrap(), "POST");
    }
}
