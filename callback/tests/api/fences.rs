//! The fence: a report changes a job only for the job's current claim. Stale, replayed and
//! foreign reports are answered `ignored` with a reason and change nothing in PostgreSQL
//! or Redis (docs/protocol.md, "The fence").

use gpuq_queue::ConsumerName;
use gpuq_schemas::JobType;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp, TestJob};

fn failed(job: &TestJob, retryable: bool) -> Value {
    json!({"jobId": job.id, "status": "failed",
           "error": {"message": "out of memory", "retryable": retryable}})
}

async fn ignored_because(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 200);
    let answer = json(res).await;
    assert_eq!(answer["ignored"], true, "{answer}");
    answer["reason"].as_str().unwrap().to_owned()
}

/// Everything Redis knows about the job: its meta and where it sits.
async fn redis_state(app: &TestApp, job: &TestJob) -> (Option<String>, Vec<bool>) {
    let q = app.queue(job.job_type);
    let keys = q.keys();
    let meta: Option<String> = redis::cmd("HGET")
        .arg(keys.meta())
        .arg(job.id.to_string())
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    let mut sets = Vec::new();
    for key in [keys.leases(), keys.delayed(), keys.dead()] {
        sets.push(app.in_set(key, job.id).await);
    }
    (meta, sets)
}

#[tokio::test]
async fn a_replayed_retryable_failure_of_attempt_one_does_not_fail_later_attempts() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    // Captured on the wire: attempt 1's signed failure, with its fence.
    let captured = app.as_holder(&failed(&job, true)).await;
    assert_eq!(
        json(app.post_exact(&captured).await).await["status"],
        "queued"
    );
    let second = ConsumerName::unique("gpu-2");
    app.redeliver(&job, &second).await;
    app.post_callback(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    let before = (app.job_row(job.id).await, redis_state(&app, &job).await);

    // Replayed (the same bytes, and re-signed now, as an attacker holding them would).
    for _ in 0..2 {
        let reason = ignored_because(app.post_exact(&captured).await).await;
        assert!(
            ["replayed", "stale_fence"].contains(&reason.as_str()),
            "{reason}"
        );
    }
    let after = (app.job_row(job.id).await, redis_state(&app, &job).await);
    assert_eq!(
        format!("{before:?}"),
        format!("{after:?}"),
        "nothing changed"
    );
    assert_eq!(after.0.status, "processing");
    assert_eq!(after.0.attempts, 2);
}

#[tokio::test]
async fn a_replayed_processing_after_a_retryable_failure_leaves_the_job_queued() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let processing = app
        .as_holder(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    app.post_exact(&processing).await;
    app.post_callback(&failed(&job, true)).await;
    assert_eq!(app.job_row(job.id).await.status, "queued");
    let reason = ignored_because(app.post_exact(&processing).await).await;
    assert!(
        ["replayed", "not_in_flight"].contains(&reason.as_str()),
        "{reason}"
    );
    // Re-signed later (a new signature), it is still about a claim that is over.
    let mut resent = processing.clone();
    resent["progress"] = Value::Null;
    assert_eq!(
        ignored_because(app.post_exact(&resent).await).await,
        "not_in_flight"
    );
    assert_eq!(app.job_row(job.id).await.status, "queued");
    assert!(
        app.in_set(app.queue(job.job_type).keys().delayed(), job.id)
            .await
    );
}

#[tokio::test]
async fn a_worker_that_does_not_hold_the_job_cannot_complete_it() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let holding = app.holding(job.id).await.unwrap();
    let outputs = json!([{"path": job.key("0.png")}]);
    for (worker, attempt, fence) in [
        (
            "intruder-1",
            holding.fence.attempt,
            holding.fence.token.clone(),
        ),
        (
            holding.consumer.as_str(),
            holding.fence.attempt + 1,
            holding.fence.token.clone(),
        ),
        (
            holding.consumer.as_str(),
            holding.fence.attempt,
            "0".repeat(32),
        ),
    ] {
        let body = json!({"jobId": job.id, "status": "completed", "workerId": worker,
                          "attempt": attempt, "fence": fence, "outputs": outputs});
        assert_eq!(
            ignored_because(app.post_exact(&body).await).await,
            "stale_fence"
        );
    }
    let unfenced = json!({"jobId": job.id, "status": "completed", "workerId": holding.consumer,
                          "attempt": holding.fence.attempt, "outputs": outputs});
    assert_eq!(
        ignored_because(app.post_exact(&unfenced).await).await,
        "stale_fence"
    );
    let anonymous = json!({"jobId": job.id, "status": "completed", "outputs": outputs});
    assert_eq!(
        ignored_because(app.post_exact(&anonymous).await).await,
        "no_fence"
    );
    assert!(app.images(job.id).await.is_empty());
    assert_eq!(app.job_row(job.id).await.status, "queued");
    assert!(app.in_redis(job.job_type, job.id).await);
    // The holder still can.
    let res = app
        .post_callback(&json!({"jobId": job.id, "status": "completed", "outputs": outputs}))
        .await;
    assert_eq!(json(res).await["ignored"], false);
}

#[tokio::test]
async fn a_progress_report_from_a_stale_claim_publishes_nothing() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    let progress = app
        .as_holder(&json!({"jobId": job.id, "status": "progress",
                           "progress": {"fraction": 0.5}}))
        .await;
    app.expire_lease(job.job_type, job.id).await;
    app.claim(job.job_type, &ConsumerName::unique("next"), job.id)
        .await;
    assert_eq!(
        ignored_because(app.post_exact(&progress).await).await,
        "stale_fence"
    );
    assert!(app.events(job.id).await.is_empty());
}

#[tokio::test]
async fn the_same_signed_request_twice_is_applied_once() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    let body = app
        .as_holder(&json!({"jobId": job.id, "status": "progress",
                           "progress": {"fraction": 0.5}}))
        .await;
    let raw = serde_json::to_vec(&body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let sig = gpuq_schemas::signature::sign(crate::helpers::SECRETS[0].as_bytes(), ts, &raw);
    let first = app
        .post_raw(
            "/v1/callback",
            raw.clone(),
            Some((ts.to_string(), sig.clone())),
        )
        .await;
    assert_eq!(json(first).await["ignored"], false);
    // The same signature in upper case is the same signature.
    let upper = format!("sha256={}", sig["sha256=".len()..].to_uppercase());
    for sig in [sig, upper] {
        let again = app
            .post_raw("/v1/callback", raw.clone(), Some((ts.to_string(), sig)))
            .await;
        assert_eq!(ignored_because(again).await, "replayed");
    }
    assert_eq!(app.events(job.id).await.len(), 1);
}

#[tokio::test]
async fn a_legacy_report_counts_only_while_the_job_is_in_flight() {
    let app = spawn_app().await;
    let waiting = app.job_with(JobType::SdxlImageFast, 3, false).await;
    for body in [
        json!({"job_id": waiting.id, "status": "processing"}),
        json!({"job_id": waiting.id, "status": "failed", "error_message": "boom"}),
        json!({"jobId": waiting.id, "status": "completed", "filePath": waiting.key("a.png")}),
    ] {
        assert_eq!(
            ignored_because(app.post_callback(&body).await).await,
            "not_in_flight"
        );
    }
    assert_eq!(app.job_row(waiting.id).await.status, "queued");
    assert!(app.in_redis(waiting.job_type, waiting.id).await);

    // Naming a worker that does not hold the job is stale too.
    let held = app.job(JobType::SdxlImageFast).await;
    let body = json!({"job_id": held.id, "status": "failed", "error_message": "boom",
                      "metadata": {"worker_id": "someone-else"}});
    assert_eq!(
        ignored_because(app.post_callback(&body).await).await,
        "stale_fence"
    );
    assert_eq!(app.job_row(held.id).await.status, "queued");
}

#[tokio::test]
async fn a_signed_probe_is_answered_without_touching_any_job() {
    let app = spawn_app().await;
    let res = app.post_exact(&json!({"probe": true})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await, json!({"success": true, "probe": true}));
    let res = app
        .post_raw("/v1/callback", br#"{"probe":true}"#.to_vec(), None)
        .await;
    assert_eq!(res.status(), 401, "a probe proves the secret");
}

#[tokio::test]
async fn a_claim_made_without_a_token_takes_reports_without_one_during_a_rolling_upgrade() {
    let app = spawn_app().await;
    let job = app.job_with(JobType::SdxlImageFast, 3, true).await;
    // A worker of the previous release claimed it: its meta has no token.
    let holding = app.holding(job.id).await.unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(app.queue(job.job_type).keys().meta())
        .arg(job.id.to_string())
        .arg(format!(
            "{}|normal|{}|1",
            holding.fence.attempt, holding.consumer
        ))
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    let old = |status: &str| {
        json!({"jobId": job.id, "status": status, "workerId": holding.consumer,
               "attempt": holding.fence.attempt})
    };
    let res = app.post_exact(&old("processing")).await;
    assert_eq!(json(res).await["ignored"], false);
    let mut done = old("completed");
    done["outputs"] = json!([{"path": job.key("0.png")}]);
    let mut wrong_attempt = done.clone();
    wrong_attempt["attempt"] = json!(holding.fence.attempt + 1);
    assert_eq!(
        ignored_because(app.post_exact(&wrong_attempt).await).await,
        "stale_fence"
    );
    let res = app.post_exact(&done).await;
    assert_eq!(json(res).await["ignored"], false);
    assert_eq!(app.job_row(job.id).await.status, "completed");
}
