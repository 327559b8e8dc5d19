//! Reading a request body under a size cap (413, before buffering, whether or not the length
//! is declared), a deadline (408: a client trickling its body is cut off, and since the body
//! is left unread the connection is closed after the answer) and, for JSON bodies, a media
//! type (415). Every rejection is an [`ApiError`], so it carries the one error body.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::HttpRequest;
use futures_util::StreamExt;
use serde_json::Value;

use crate::ApiError;

/// Why a body was not read; each becomes one [`ApiError`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// Larger than the cap (413).
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body did not arrive within the deadline (408).
    #[error("request body did not arrive within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The connection failed mid-body (400 `unreadable_body`).
    #[error("could not read body: {0}")]
    Read(String),
    /// A declared media type other than JSON (415).
    #[error("request body must be application/json")]
    NotJson,
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(limit) => Self::PayloadTooLarge(limit),
            BodyError::TimedOut(deadline) => Self::RequestTimeout(deadline),
            read @ BodyError::Read(_) => Self::bad_request("unreadable_body", read.to_string()),
            BodyError::NotJson => Self::UnsupportedMediaType,
        }
    }
}

/// The whole body of `req`, at most `limit` bytes, arrived within `deadline`.
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| BodyError::TimedOut(deadline))?
}

/// Whether `req` declares a JSON body. `required`: a missing `Content-Type` is refused too
/// (apps); otherwise only a declared non-JSON type is (legacy workers that send none).
pub fn check_json_media_type(req: &HttpRequest, required: bool) -> Result<(), BodyError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return if required {
            Err(BodyError::NotJson)
        } else {
            Ok(())
        };
    };
    let mime = value.to_str().unwrap_or("").split(';').next().unwrap_or("");
    if mime.trim().eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(BodyError::NotJson)
    }
}

/// A JSON body (`Content-Type: application/json` required) of at most `limit` bytes,
/// arrived within `deadline`, parsed.
pub async fn json_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Value, ApiError> {
    check_json_media_type(req, true)?;
    let body = read_limited(req, payload, limit, deadline).await?;
    // serde_json refuses nesting deeper than 128 before building it; callers then apply
    // their own tighter bounds.
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not valid JSON: {e}")))
}
