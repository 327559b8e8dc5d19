//! Cross-origin calls from browser pages (`application.cors_origins`).
//!
//! Apps call gpuq from pages on their own origin (`supabase.functions.invoke` in a browser
//! is a cross-origin `POST` with an `Authorization` header, so the browser first sends a
//! preflight `OPTIONS`). `actix-cors` answers preflights for every route, before routing,
//! and adds `Access-Control-Allow-Origin` to answers for allowed origins. A request from any
//! other origin is still served (block-on-mismatch is off): the browser, not the server,
//! withholds the answer from the page, and same-origin pages (the admin dashboard), curl and
//! server-side callers, which send no or their own `Origin`, keep working.
//!
//! Credentials travel as bearer tokens, never cookies, so credentials mode stays off and
//! `*` may be sent as is.

use actix_cors::Cors;
use actix_web::http::{header, Method};

/// Request headers a page may send: what supabase-js sends (`authorization`, `apikey`,
/// `x-client-info`, `content-type`) and gpuq's own.
pub const ALLOWED_HEADERS: [&str; 7] = [
    "authorization",
    "apikey",
    "content-type",
    "x-client-info",
    "x-region",
    "idempotency-key",
    "last-event-id",
];

/// Answer headers a page may read.
pub const EXPOSED_HEADERS: [&str; 3] = ["retry-after", "x-request-id", "location"];

/// A configured origin that is not `*` nor `scheme://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("GPUQ_CORS_ORIGINS: {0:?} is not an origin (scheme://host[:port], no path) nor *")]
pub struct BadOrigin(pub String);

/// Checks `origins` (start-up refuses a bad one rather than ignoring it).
pub fn check(origins: &[String]) -> Result<(), BadOrigin> {
    for origin in origins {
        if origin != "*" && !is_origin(origin) {
            return Err(BadOrigin(origin.clone()));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` exactly as a browser writes an `Origin` header: an http(s) URL
/// whose serialized origin is the text itself (lower-case host, no default port, no path),
/// so a configured origin can match.
fn is_origin(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.origin().ascii_serialization() == s
    })
}

/// The middleware for `origins` (already [`check`]ed); `None` when the list is empty.
pub fn middleware(origins: &[String]) -> Option<Cors> {
    if origins.is_empty() {
        return None;
    }
    let cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods([Method::GET, Method::POST, Method::DELETE])
        .allowed_headers(ALLOWED_HEADERS.map(header::HeaderName::from_static))
        .expose_headers(EXPOSED_HEADERS.map(header::HeaderName::from_static))
        .max_age(3600);
    Some(if origins.iter().any(|o| o == "*") {
        cors.allow_any_origin().send_wildcard()
    } else {
        origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "https://app.example.com",
            "http://127.0.0.1:5173",
            "http://[::1]:8080",
            "*",
        ] {
            assert!(check(&[good.to_owned()]).is_ok(), "{good}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
            "https://a.com:",
            "https://user@a.com",
            "null",
            "http://a:b",
            "http://[::1",
            "https://a.com:99999",
            "https://App.example.com",
            "https://x.com:443",
        ] {
            assert!(check(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
