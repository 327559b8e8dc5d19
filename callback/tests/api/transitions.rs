//! `processing`, `progress`, `completed`, and the terminal-state rule.

use gpuq_schemas::{JobEventKind, JobStatus, JobType};
use serde_json::json;

use gpuq_queue::ConsumerName;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn processing_sets_status_worker_started_at_and_the_attempt() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    assert_eq!(json(res).await["status"], "processing");
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "processing");
    assert_eq!(row.worker_id.as_deref(), Some(job.consumer.as_str()));
    assert_eq!(row.attempts, 1);
    let started = row.started_at.expect("started_at set");

    // The lease runs out and another worker starts attempt 2: the first start time is kept.
    let next = ConsumerName::unique("gpu-8");
    app.expire_lease(job.job_type, job.id).await;
    app.claim(job.job_type, &next, job.id).await;
    app.post_callback(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    let row = app.job_row(job.id).await;
    assert_eq!(
        (row.worker_id.as_deref(), row.attempts),
        (Some(next.as_str()), 2)
    );
    assert_eq!(row.started_at, Some(started));
    let events = app.events(job.id).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.status == JobStatus::Processing));
}

#[tokio::test]
async fn a_processing_report_sent_late_starts_the_job_and_its_attempt_at_the_claim() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let claimed = app.holding(job.id).await.unwrap().since_ms.unwrap();
    let claimed = chrono::DateTime::from_timestamp_millis(claimed as i64).unwrap();
    // The worker reports a moment after its handler started (`report_processing_after`).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    assert_eq!(json(res).await["status"], "processing");
    assert_eq!(app.job_row(job.id).await.started_at, Some(claimed));
    let attempt: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT started_at FROM job_attempts WHERE job_id = $1")
            .bind(job.id.as_uuid())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(attempt, claimed, "metered from the claim, not the report");
}

#[tokio::test]
async fn a_legacy_processing_report_takes_the_worker_and_attempt_from_the_claim() {
    let app = spawn_app().await;
    let job = app.job(JobType::ImageFast).await;
    app.post_callback(&json!({"job_id": job.id, "status": "processing"}))
        .await;
    let row = app.job_row(job.id).await;
    assert_eq!(
        (row.attempts, row.worker_id.as_deref()),
        (1, Some(job.consumer.as_str()))
    );
}

#[tokio::test]
async fn progress_publishes_an_event_and_changes_no_row() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    app.post_callback(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "progress",
                               "progress": {"fraction": 0.5, "message": "step 12/25"}}))
        .await;
    assert_eq!(res.status(), 200);
    let events = app.events(job.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind, JobEventKind::Progress);
    assert_eq!(last.progress, Some(0.5));
    assert_eq!(last.message.as_deref(), Some("step 12/25"));
    assert_eq!(app.job_row(job.id).await.status, "processing");
}

#[tokio::test]
async fn completed_finishes_the_job_removes_it_from_redis_and_publishes_the_change() {
    let app = spawn_app().await;
    let job = app.job(JobType::Image7bFastEnhanced).await;
    assert!(app.in_redis(job.job_type, job.id).await);
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "completed",
                               "outputs": [{"path": job.key("a.png")}], "enhancedPrompt": "richer"}))
        .await;
    assert_eq!(res.status(), 200);
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "completed");
    assert!(row.completed_at.is_some());
    assert_eq!(row.enhanced_prompt.as_deref(), Some("richer"));
    assert_eq!(row.error_message, None);
    assert_eq!(row.attempts, 1);
    let images = app.images(job.id).await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].bucket, "image7b_fast_enhanced");
    assert!(!app.in_redis(job.job_type, job.id).await, "acked");
    let events = app.events(job.id).await;
    assert!(events.last().unwrap().is_terminal());
    assert_eq!(events.last().unwrap().status, JobStatus::Completed);
}

#[tokio::test]
async fn a_completed_video_job_records_one_video_row() {
    let app = spawn_app().await;
    let job = app.job(JobType::Video7bHighEnhanced).await;
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "completed",
            "outputs": [{"path": job.key("v.mp4"), "durationSeconds": 5.2, "thumbnailPath": job.key("v.jpg")}]}))
        .await;
    assert_eq!(res.status(), 200);
    let videos = app.videos(job.id).await;
    assert_eq!(videos.len(), 1);
    assert_eq!(videos[0].bucket, "video7b_high_enhanced");
    assert_eq!(videos[0].thumbnail_path, Some(job.key("v.jpg")));
    assert!(app.images(job.id).await.is_empty());
}

#[tokio::test]
async fn a_completed_callback_without_outputs_is_rejected_with_422() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "completed"}))
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(json(res).await["error"]["code"], "missing_outputs");
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn a_callback_for_a_finished_job_is_ignored_and_changes_nothing() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    app.post_callback(&json!({"jobId": job.id, "status": "completed",
                              "outputs": [{"path": job.key("a.png")}]}))
        .await;
    let before = app.job_row(job.id).await;
    let events_before = app.events(job.id).await.len();
    for late in [
        json!({"jobId": job.id, "status": "completed", "outputs": [{"path": job.key("b.png")}, {"path": job.key("c.png")}]}),
        json!({"jobId": job.id, "status": "failed", "error": {"message": "late", "retryable": true}}),
        json!({"jobId": job.id, "status": "processing", "workerId": "late"}),
        json!({"jobId": job.id, "status": "progress", "progress": {"fraction": 0.9}}),
    ] {
        let res = app.post_callback(&late).await;
        assert_eq!(res.status(), 200);
        let body = json(res).await;
        assert_eq!(body["ignored"], true, "{late}");
        assert_eq!(body["status"], "completed");
    }
    let after = app.job_row(job.id).await;
    assert_eq!(
        (
            after.status,
            after.completed_at,
            after.worker_id,
            after.error_message
        ),
        (
            before.status,
            before.completed_at,
            before.worker_id,
            before.error_message
        )
    );
    assert_eq!(app.images(job.id).await.len(), 1);
    assert_eq!(app.events(job.id).await.len(), events_before);
}

#[tokio::test]
async fn the_first_terminal_callback_wins_over_a_later_completion() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(
            &json!({"jobId": job.id, "status": "failed", "error": {"message": "bad prompt"}}),
        )
        .await;
    assert_eq!(json(res).await["status"], "failed");
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "completed", "outputs": [{"path": job.key("a.png")}]}))
        .await;
    let body = json(res).await;
    assert_eq!(
        (body["status"].as_str(), body["ignored"].as_bool()),
        (Some("failed"), Some(true))
    );
    assert!(app.images(job.id).await.is_empty());
}
