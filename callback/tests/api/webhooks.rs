//! What the callback service writes to the webhook outbox: the trigger's `started` and
//! `completed` events with the outputs of the same transaction (and `started` for a job
//! that ends without having reported it), and `progress` events, throttled.

use gpuq_schemas::JobType;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};

/// An enabled endpoint (a closed port: nothing is delivered) for `events`.
async fn endpoint(db: &sqlx::PgPool, events: &[&str]) {
    sqlx::query(
        "INSERT INTO webhook_endpoints (url, secret, events)
         VALUES ('http://127.0.0.1:9/hooks', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', $1)",
    )
    .bind(events)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_jobs_reports_write_its_events_with_progress_throttled_and_outputs_listed() {
    let app = spawn_app_with(|s| s.webhooks.progress_interval_ms = 60_000).await;
    endpoint(&app.db, &gpuq_schemas::WEBHOOK_EVENTS).await;
    let job = app.job(JobType::SdxlImageFast).await;
    for body in [
        json!({"jobId": job.id, "status": "processing"}),
        json!({"jobId": job.id, "status": "progress", "progress": {"fraction": 0.5, "message": "halfway"}}),
        json!({"jobId": job.id, "status": "progress", "progress": {"fraction": 0.9, "message": "throttled"}}),
        json!({"jobId": job.id, "status": "completed", "outputs": [{"path": job.key("0.png")}, {"path": job.key("1.png")}]}),
    ] {
        assert_eq!(app.post_callback(&body).await.status(), 200, "{body}");
    }
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT event, payload FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, event",
    )
    .bind(job.id.as_uuid())
    .fetch_all(&app.db)
    .await
    .unwrap();
    let events: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["queued", "started", "progress", "completed"]);
    assert_eq!(rows[2].1["data"]["message"], "halfway");
    assert_eq!(rows[2].1["data"]["progress"], 0.5);
    let outputs = &rows[3].1["data"]["outputs"];
    assert_eq!(outputs.as_array().unwrap().len(), 2, "{outputs}");
    assert_eq!(outputs[1]["path"], job.key("1.png"));
    assert_eq!(rows[3].1["type"], "job.completed");
}

#[tokio::test]
async fn a_job_completed_without_a_processing_report_still_writes_its_started_event() {
    let app = spawn_app().await;
    endpoint(&app.db, &["started", "completed"]).await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body =
        json!({"jobId": job.id, "status": "completed", "outputs": [{"path": job.key("0.png")}]});
    assert_eq!(app.post_callback(&body).await.status(), 200);
    let mut rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT event, payload FROM webhook_deliveries WHERE job_id = $1")
            .bind(job.id.as_uuid())
            .fetch_all(&app.db)
            .await
            .unwrap();
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    let events: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["started", "completed"]);
    // The started event shows the job as it ran, at its start; the completed one as it
    // ended.
    assert_eq!(rows[0].1["type"], "job.started");
    let at = |row: &(String, Value)| row.1["timestamp"].as_str().unwrap().to_owned();
    assert!(
        at(&rows[0]) < at(&rows[1]),
        "{} !< {}",
        at(&rows[0]),
        at(&rows[1])
    );
    assert_eq!(rows[0].1["data"]["status"], "processing");
    assert_eq!(rows[1].1["data"]["status"], "completed");
    assert_eq!(rows[1].1["data"]["outputs"][0]["path"], job.key("0.png"));
}

#[tokio::test]
async fn a_job_that_fails_without_a_processing_report_starts_at_its_claim_and_says_started() {
    let app = spawn_app().await;
    endpoint(&app.db, &["started", "failed"]).await;
    let job = app.job(JobType::SdxlImageFast).await;
    let claimed = app.holding(job.id).await.unwrap().since_ms.unwrap();
    let claimed = chrono::DateTime::from_timestamp_millis(claimed as i64).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let body = json!({"jobId": job.id, "status": "failed",
                      "error": {"message": "bad input", "retryable": false}});
    assert_eq!(app.post_callback(&body).await.status(), 200);
    let row = app.job_row(job.id).await;
    assert_eq!(
        (row.status.as_str(), row.started_at),
        ("failed", Some(claimed))
    );
    let mut events: Vec<String> =
        sqlx::query_scalar("SELECT event FROM webhook_deliveries WHERE job_id = $1")
            .bind(job.id.as_uuid())
            .fetch_all(&app.db)
            .await
            .unwrap();
    events.sort();
    assert_eq!(events, ["failed", "started"]);
}

#[tokio::test]
async fn a_retried_failure_records_no_start_and_an_end_after_an_earlier_start_says_no_started() {
    let app = spawn_app().await;
    endpoint(&app.db, &["started", "failed"]).await;
    let events = |id: gpuq_schemas::JobId| {
        let db = app.db.clone();
        async move {
            let mut e: Vec<String> =
                sqlx::query_scalar("SELECT event FROM webhook_deliveries WHERE job_id = $1")
                    .bind(id.as_uuid())
                    .fetch_all(&db)
                    .await
                    .unwrap();
            e.sort();
            e
        }
    };
    // A retryable failure without `processing`: the job waits again, not started, silent.
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let body = json!({"jobId": job.id, "status": "failed",
                      "error": {"message": "out of memory", "retryable": true}});
    assert_eq!(app.post_callback(&body).await.status(), 200);
    let row = app.job_row(job.id).await;
    assert_eq!((row.status.as_str(), row.started_at), ("queued", None));
    assert!(events(job.id).await.is_empty());

    // A job whose earlier attempt started, ended from `queued` by the dispatcher (found
    // lost): its start was announced then, so no second `started` now.
    let job = app.job(JobType::SdxlImageFast).await;
    let started = json!({"jobId": job.id, "status": "processing"});
    assert_eq!(app.post_callback(&started).await.status(), 200);
    for status in ["queued", "failed"] {
        sqlx::query(
            "UPDATE jobs SET status = $2, \
             completed_at = CASE WHEN $2 = 'failed' THEN now() END WHERE id = $1",
        )
        .bind(job.id.as_uuid())
        .bind(status)
        .execute(&app.db)
        .await
        .unwrap();
    }
    assert_eq!(events(job.id).await, ["failed", "started"]);
}
