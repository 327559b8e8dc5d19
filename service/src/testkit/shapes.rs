//! The answers every gpuq service gives alike — `/healthz`, `/readyz`, 404, 405, 413, 415
//! and 503 — checked the same way on each service (each service's tests call these), so
//! the two cannot drift apart again.

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde_json::Value;

/// Asserts `response` is `status` with exactly gpuq's error body and `code`; returns it.
pub async fn assert_error_body(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status of {}",
        response.url()
    );
    let body: Value = response.json().await.expect("a JSON error body");
    let top: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(top, ["error", "success"], "{body}");
    assert_eq!(body["success"], false, "{body}");
    let detail: Vec<&String> = body["error"]
        .as_object()
        .expect("error object")
        .keys()
        .collect();
    assert_eq!(detail, ["code", "message"], "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    body
}

/// `GET /healthz` answers 200 `{"success": true, "status": "ok"}`.
pub async fn healthz(base: &str) {
    let res = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().contains_key("x-request-id"),
        "request id header"
    );
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(body, serde_json::json!({"success": true, "status": "ok"}));
}

/// `GET /readyz` answers 200 with both dependencies up.
pub async fn readyz_ready(base: &str) {
    let res = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"success": true, "status": "ready", "postgres": true, "redis": true})
    );
}

/// `GET /readyz` answers 503 `unavailable` naming PostgreSQL as down, within the probe
/// bound (a second) plus slack.
pub async fn readyz_postgres_down(base: &str) {
    let started = std::time::Instant::now();
    let res = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    let body = assert_error_body(res, 503, "unavailable").await;
    assert_eq!(
        body["error"]["message"],
        "not ready: postgres down, redis up"
    );
    assert!(
        started.elapsed().as_secs() < 5,
        "probe took {:?}",
        started.elapsed()
    );
}

/// An unknown path answers 404 `not_found`.
pub async fn not_found(base: &str) {
    let res = reqwest::get(format!("{base}/no/such/path"))
        .await
        .expect("404");
    assert_error_body(res, 404, "not_found").await;
}

/// `DELETE path` answers 405 `method_not_allowed` with `Allow: allow`.
pub async fn method_not_allowed(base: &str, path: &str, allow: &str) {
    let res = reqwest::Client::new()
        .delete(format!("{base}{path}"))
        .send()
        .await
        .expect("405");
    assert_eq!(
        res.headers().get("allow").map(|v| v.to_str().unwrap()),
        Some(allow)
    );
    assert_error_body(res, 405, "method_not_allowed").await;
}

/// A JSON body of `limit + 1` bytes posted to `path` answers 413 `payload_too_large`.
pub async fn payload_too_large(base: &str, path: &str, limit: usize, headers: HeaderMap) {
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(limit));
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .headers(headers)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("413");
    assert_error_body(res, 413, "payload_too_large").await;
}

/// A `text/plain` body posted to `path` answers 415 `unsupported_media_type`.
pub async fn unsupported_media_type(base: &str, path: &str, headers: HeaderMap) {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .headers(headers)
        .header(CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .expect("415");
    assert_error_body(res, 415, "unsupported_media_type").await;
}
