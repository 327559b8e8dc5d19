//! Reading a JSON request body with a size cap (413), a deadline (408) and a media-type
//! check (415), so that every rejection carries gpuq's JSON error body.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use crate::ApiError;

/// Largest request body, bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Reads and parses a JSON body of at most [`MAX_BODY`] bytes that arrives within
/// `deadline` (a client trickling its body gets 408, and actix-web closes the connection
/// since the body was left unread).
pub async fn json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    deadline: Duration,
) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("invalid_body", format!("could not read body: {e}"))
            })?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::PayloadTooLarge(MAX_BODY));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| ApiError::RequestTimeout(deadline))??;
    // serde_json refuses nesting deeper than 128 before building it; validation then
    // applies gpuq's tighter bound.
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not valid JSON: {e}")))
}
