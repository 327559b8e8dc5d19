//! Reading a request body with a size cap, so an oversized callback is refused (413)
//! before it is buffered, whether or not it declares its length, and with a deadline, so a
//! client trickling its body is cut off (408).

use std::time::Duration;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::HttpRequest;
use futures_util::StreamExt;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the cap.
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The body did not arrive within the deadline.
    #[error("request body did not arrive within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The connection failed mid-body.
    #[error("request body could not be read")]
    Read(#[source] actix_web::error::PayloadError),
}

/// The whole body of `req`, at most `limit` bytes, arrived within `deadline` (when it does
/// not, the body is left unread and actix-web closes the connection after the answer).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(BodyError::Read)?;
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
