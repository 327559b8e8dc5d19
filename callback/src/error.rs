//! The JSON error body every endpoint answers with —
//! `{"success": false, "error": {"code", "message"}}` — and cause-chain formatting for
//! the logs (bodies of 5xx answers never carry internals; the log does).

use std::error::Error;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// An error answer with `status`, a machine-readable `code` and a human-readable `message`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        success: false,
        error: ErrorDetail { code, message },
    })
}

/// `error: cause: cause...`, for logs.
pub fn cause_chain(error: &dyn Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The answer for a path no route serves.
pub async fn not_found() -> HttpResponse {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The answer for a served path called with the wrong method.
pub async fn method_not_allowed() -> HttpResponse {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
