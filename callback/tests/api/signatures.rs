//! Authentication: missing, wrong, stale and rotated signatures.

use gpuq_schemas::signature::sign;
use gpuq_schemas::JobType;
use serde_json::json;

use crate::helpers::{json, spawn_app, SECRETS};

/// A completion as the job's holder sends it.
async fn completed(app: &crate::helpers::TestApp, job: &crate::helpers::TestJob) -> Vec<u8> {
    let body = json!({
        "jobId": job.id, "status": "completed", "outputs": [{"path": job.key("a.png")}]
    });
    serde_json::to_vec(&app.as_holder(&body).await).unwrap()
}

#[tokio::test]
async fn a_callback_without_signature_headers_is_rejected_with_401_and_changes_nothing() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_raw("/v1/callback", completed(&app, &job).await, None)
        .await;
    assert_eq!(res.status(), 401);
    let body = json(res).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "invalid_signature");
    assert_eq!(app.job_row(job.id).await.status, "queued");
    assert!(app.images(job.id).await.is_empty());
}

#[tokio::test]
async fn a_callback_with_a_wrong_signature_is_rejected_with_401() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = completed(&app, &job).await;
    let ts = chrono::Utc::now().timestamp();
    let sig = sign(b"not-a-configured-secret", ts, &body);
    let res = app
        .post_raw("/v1/callback", body, Some((ts.to_string(), sig)))
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn a_signature_over_a_different_body_is_rejected_with_401() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let ts = chrono::Utc::now().timestamp();
    let sig = sign(SECRETS[0].as_bytes(), ts, b"{}");
    let res = app
        .post_raw(
            "/v1/callback",
            completed(&app, &job).await,
            Some((ts.to_string(), sig)),
        )
        .await;
    assert_eq!(res.status(), 401);
    assert!(app.images(job.id).await.is_empty());
}

#[tokio::test]
async fn a_callback_signed_more_than_five_minutes_ago_is_rejected_with_401() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = completed(&app, &job).await;
    let ts = chrono::Utc::now().timestamp() - 301;
    let sig = sign(SECRETS[0].as_bytes(), ts, &body);
    let res = app
        .post_raw("/v1/callback", body, Some((ts.to_string(), sig)))
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn a_callback_signed_with_the_rotated_second_secret_is_accepted() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = completed(&app, &job).await;
    let ts = chrono::Utc::now().timestamp();
    let sig = sign(SECRETS[1].as_bytes(), ts, &body);
    let res = app
        .post_raw("/v1/callback", body, Some((ts.to_string(), sig)))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.job_row(job.id).await.status, "completed");
}

#[tokio::test]
async fn the_signature_is_checked_before_the_body_is_parsed() {
    let app = spawn_app().await;
    let res = app
        .post_raw("/v1/callback", b"{not json".to_vec(), None)
        .await;
    assert_eq!(res.status(), 401);
}
