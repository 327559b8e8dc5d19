//! [`ApiError`]: every way a request can fail, mapped to a status and a JSON body
//! `{ "success": false, "error": { "code", "message" } }`. A 500 body never carries the
//! cause; the log does.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

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
    /// 401: no or invalid credentials.
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
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405 with `Allow`: the path exists, the method does not.
    #[error("method not allowed; this endpoint allows {0}")]
    MethodNotAllowed(&'static str),
    /// 409: the job's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// 408: the body did not arrive within the deadline.
    #[error("request body did not arrive within {} ms", .0.as_millis())]
    RequestTimeout(std::time::Duration),
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
    /// 503: Redis or PostgreSQL is unavailable.
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

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Forbidden { code, .. }
            | Self::TooManyRequests { code, .. } => code,
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
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::from_shared_db_error(&e)
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl ApiError {
    /// As `From<sqlx::Error>`, for an error several requests share (a failed batch).
    pub fn from_shared_db_error(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %e, "postgres unavailable");
                Self::Unavailable("database unavailable".into())
            }
            other => Self::Internal(anyhow::anyhow!("{other}")),
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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::TooManyRequests { retry_after, .. } = self {
            response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        if let Self::MethodNotAllowed(allow) = self {
            response.insert_header((header::ALLOW, *allow));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let message = match self {
            Self::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        response
            .json(json!({ "success": false, "error": { "code": self.code(), "message": message } }))
    }
}
