//! The answers both gpuq services give alike (`gpuq_service::testkit::shapes`), on the
//! callback service, and its metrics.

use reqwest::header::HeaderMap;
use secrecy::SecretString;

use gpuq_service::configuration::Layered;
use gpuq_service::testkit::shapes;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_the_shared_shape() {
    shapes::healthz(&spawn_app().await.address).await;
}

#[tokio::test]
async fn readyz_answers_the_shared_shape_when_ready() {
    shapes::readyz_ready(&spawn_app().await.address).await;
}

#[tokio::test]
async fn readyz_answers_503_unavailable_fast_when_postgres_is_down() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres:postgres@127.0.0.1:1/none");
        s.database.migrate = false;
    })
    .await;
    shapes::readyz_postgres_down(&app.address).await;
}

#[tokio::test]
async fn an_unknown_path_answers_the_shared_404() {
    shapes::not_found(&spawn_app().await.address).await;
}

#[tokio::test]
async fn a_wrong_method_answers_the_shared_405_with_allow() {
    let app = spawn_app().await;
    shapes::method_not_allowed(&app.address, "/v1/callback", "POST").await;
    shapes::method_not_allowed(&app.address, "/functions/v1/job-callback", "POST").await;
}

#[tokio::test]
async fn an_oversized_body_answers_the_shared_413() {
    let app = spawn_app().await;
    let limit = gpuq_callback::Settings::defaults()
        .unwrap()
        .application
        .max_body_bytes;
    shapes::payload_too_large(&app.address, "/v1/callback", limit, HeaderMap::new()).await;
}

#[tokio::test]
async fn a_body_declared_as_something_else_than_json_answers_the_shared_415() {
    let app = spawn_app().await;
    shapes::unsupported_media_type(&app.address, "/v1/callback", HeaderMap::new()).await;
}

#[tokio::test]
async fn a_callback_while_postgres_is_down_answers_the_shared_503() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres:postgres@127.0.0.1:1/none");
        s.database.migrate = false;
        s.database.acquire_timeout_ms = 200;
    })
    .await;
    let id = gpuq_schemas::JobId::new();
    let res = app
        .post_callback(&serde_json::json!({"jobId": id, "status": "processing", "attempt": 1}))
        .await;
    shapes::assert_error_body(res, 503, "unavailable").await;
}

#[tokio::test]
async fn metrics_count_outcomes_finished_jobs_and_timings() {
    let app = spawn_app().await;
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
        "gpuq_queue_job_run_seconds_count{queue=\"sdxl_queue\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn metrics_behind_a_token_refuse_scrapes_without_it() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.application.metrics_token = Some("scrape-me".to_string().into());
    })
    .await;
    for auth in [None, Some("Bearer wrong"), Some("scrape-me")] {
        let mut req = app.http.get(format!("{}/metrics", app.address));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            crate::helpers::json(res).await["error"]["code"],
            "unauthorized"
        );
    }
    let scrape = |accept: &'static str| {
        app.http
            .get(format!("{}/metrics", app.address))
            .bearer_auth("scrape-me")
            .header("Accept", accept)
            .send()
    };
    // Prometheus prefers OpenMetrics; promtool and older scrapers read the classic format.
    let res = scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let res = scrape("text/plain;version=0.0.4").await.unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("# EOF") && text.contains("# TYPE "),
        "{text}"
    );
    // A counter family is named as its samples are (0.0.4 has no `_total` suffix rule).
    for line in text.lines().filter(|l| l.ends_with(" counter")) {
        assert!(line.ends_with("_total counter"), "{line}");
    }
}
