//! `/healthz`, `/readyz`, and the JSON answers for unknown routes.

use crate::helpers::{json, spawn_app, spawn_app_with};
use secrecy::SecretString;

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn readyz_answers_200_when_postgres_and_redis_answer() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["postgres"], true);
}

#[tokio::test]
async fn readyz_answers_503_when_postgres_is_down() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres:postgres@127.0.0.1:1/none");
        s.database.migrate = false;
    })
    .await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body = json(res).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["message"], "postgres down, redis up");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let res = app.get("/nope").await;
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "not_found");
    let res = app.get("/v1/callback").await;
    assert_eq!(res.status(), 405);
    assert_eq!(json(res).await["success"], false);
}

#[tokio::test]
async fn metrics_count_outcomes_finished_jobs_and_timings() {
    let app = crate::helpers::spawn_app().await;
    let job = app.job(gpuq_schemas::JobType::SdxlImageFast).await;
    app.post_callback(&serde_json::json!({"jobId": job.id, "status": "processing", "attempt": 1}))
        .await;
    let done = serde_json::json!({"jobId": job.id, "status": "completed", "outputs": [{"path": job.key("a.png")}]});
    app.post_callback(&done).await;
    app.post_callback(&done).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "gpuq_callbacks_total{outcome=\"recorded\"} 2",
        "gpuq_callbacks_total{outcome=\"ignored\"} 1",
        "gpuq_jobs_finished_total{job_type=\"sdxl_image_fast\",status=\"completed\"} 1",
        "gpuq_job_wait_seconds_count 1",
        "gpuq_job_run_seconds_count 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
