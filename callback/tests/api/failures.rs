//! `failed`: retry with backoff versus the dead-letter set, through the real queue.

use gpuq_schemas::{JobStatus, JobType};
use serde_json::json;

use crate::helpers::{json, spawn_app, TestJob};

fn retryable(job: &TestJob, message: &str) -> serde_json::Value {
    json!({"jobId": job.id, "status": "failed", "workerId": job.consumer.as_str(),
           "error": {"message": message, "retryable": true}})
}

#[tokio::test]
async fn a_retryable_failure_with_attempts_left_is_delayed_in_redis_and_queued_again() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let res = app
        .post_callback(&retryable(&job, "CUDA out of memory"))
        .await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(
        (body["status"].as_str(), body["ignored"].as_bool()),
        (Some("queued"), Some(false))
    );
    let keys = app.queue(job.job_type).keys().clone();
    assert!(
        app.in_set(keys.delayed(), job.id).await,
        "in the delayed set"
    );
    assert!(!app.in_set(keys.dead(), job.id).await);
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "queued");
    assert_eq!(row.attempts, 1, "attempts + 1");
    assert_eq!(row.error_message.as_deref(), Some("CUDA out of memory"));
    assert!(row.completed_at.is_none());
    let event = app.events(job.id).await.pop().unwrap();
    assert_eq!(event.status, JobStatus::Queued);
}

#[tokio::test]
async fn an_execution_timeout_keeps_its_code_in_the_row_and_the_event_and_an_unknown_code_is_refused(
) {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 2, true).await;
    let mut body = retryable(&job, "execution_timeout: past its 60.0 s run limit");
    body["error"]["code"] = json!("out_of_patience");
    let (before, events) = (app.job_row(job.id).await, app.events(job.id).await.len());
    let res = app.post_callback(&body).await;
    assert_eq!(res.status(), 400, "an unknown code is a bad report");
    let text = res.text().await.unwrap();
    assert!(text.contains("out_of_patience"), "{text}");
    let after = app.job_row(job.id).await;
    assert_eq!(
        (after.status, after.attempts),
        (before.status, before.attempts)
    );
    assert_eq!(app.events(job.id).await.len(), events, "nothing written");
    assert!(app.in_redis(job.job_type, job.id).await);

    body["error"]["code"] = json!("execution_timeout");
    assert_eq!(
        json(app.post_callback(&body).await).await["status"],
        "queued"
    );
    let row = app.job_row(job.id).await;
    assert_eq!(row.error_code.as_deref(), Some("execution_timeout"));
    app.redeliver(&job, &job.consumer).await;
    // The next attempt's failure says why it failed; a plain one has no code.
    app.post_callback(&retryable(&job, "oom")).await;
    let row = app.job_row(job.id).await;
    assert_eq!((row.status.as_str(), row.error_code), ("failed", None));

    let job = app.job_with(JobType::SdxlImageFast, 1, true).await;
    let mut body = retryable(&job, "execution_timeout: past its limit");
    body["error"]["code"] = json!("execution_timeout");
    assert_eq!(
        json(app.post_callback(&body).await).await["status"],
        "failed"
    );
    let row = app.job_row(job.id).await;
    assert_eq!(row.error_code.as_deref(), Some("execution_timeout"));
    let last = app.events(job.id).await.pop().unwrap();
    assert_eq!(last.code.as_deref(), Some("execution_timeout"));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "gpuq_attempt_failures_total{queue=\"sdxl_queue\",code=\"execution_timeout\"} 2",
        "gpuq_attempt_failures_total{queue=\"sdxl_queue\",code=\"none\"} 1",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_failure_on_the_last_attempt_dead_letters_the_job_and_marks_it_failed() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 2, true).await;
    app.post_callback(&retryable(&job, "oom 1")).await;
    app.redeliver(&job, &job.consumer).await;
    let res = app.post_callback(&retryable(&job, "oom 2")).await;
    assert_eq!(json(res).await["status"], "failed");
    let keys = app.queue(job.job_type).keys().clone();
    assert!(app.in_set(keys.dead(), job.id).await, "in the dead set");
    assert!(!app.in_set(keys.delayed(), job.id).await);
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, 2);
    assert_eq!(row.error_message.as_deref(), Some("oom 2"));
    assert!(row.completed_at.is_some());
    assert!(app.events(job.id).await.last().unwrap().is_terminal());
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_the_job_at_once() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::VideoFast, 2, true).await;
    let res = app
        .post_callback(
            &json!({"job_id": job.id, "status": "failed", "error_message": "prompt refused"}),
        )
        .await;
    assert_eq!(json(res).await["status"], "failed");
    assert!(
        app.in_set(app.queue(job.job_type).keys().dead(), job.id)
            .await
    );
    let row = app.job_row(job.id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 1));
}

#[tokio::test]
async fn a_failure_for_a_job_redis_no_longer_holds_changes_nothing() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let report = app.as_holder(&retryable(&job, "lost")).await;
    app.queue(job.job_type).ack(job.id, None).await.unwrap();
    let answer = json(app.post_exact(&report).await).await;
    assert_eq!(
        (answer["ignored"].as_bool(), answer["reason"].as_str()),
        (Some(true), Some("not_in_flight"))
    );
    // The reconciler, not a report, decides what becomes of a job Redis lost.
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn a_repeated_retryable_failure_does_not_kill_a_job_waiting_for_its_retry() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    app.post_callback(&retryable(&job, "oom")).await;
    let res = app.post_callback(&retryable(&job, "oom")).await;
    assert_eq!(json(res).await["status"], "queued");
    assert_eq!(app.job_row(job.id).await.status, "queued");
    assert!(
        app.in_set(app.queue(job.job_type).keys().delayed(), job.id)
            .await
    );
}

#[tokio::test]
async fn a_retried_job_can_still_complete_and_keeps_no_error_of_the_failed_attempt() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let mut timeout = retryable(&job, "execution_timeout: past its limit");
    timeout["error"]["code"] = json!("execution_timeout");
    app.post_callback(&timeout).await;
    app.redeliver(&job, &job.consumer).await;
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "completed",
                               "outputs": [{"path": job.key("a.png")}]}))
        .await;
    assert_eq!(json(res).await["status"], "completed");
    let row = app.job_row(job.id).await;
    assert_eq!(
        (row.status.as_str(), row.attempts, row.error_message),
        ("completed", 2, None)
    );
    assert_eq!(row.error_code, None, "a completed job has no error code");
    assert!(!app.in_redis(job.job_type, job.id).await);
}
