//! `startWithinSeconds`: a job no worker starts in time fails with `start_deadline_exceeded`
//! (its row, its event); one the queue predicts cannot start in time is refused at once.

use std::time::Duration;

use gpuq_queue::ConsumerName;
use gpuq_schemas::JobStatus;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn within(job_type: &str, secs: Value) -> Value {
    json!({ "jobType": job_type, "metadata": { "prompt": "p" }, "startWithinSeconds": secs })
}

async fn accepted(app: &TestApp, token: &str, body: &Value) -> String {
    let res = app.post_job(token, body).await;
    assert_eq!(res.status(), 202);
    let answer: Value = res.json().await.unwrap();
    answer["job"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_job_no_worker_starts_in_time_fails_with_its_code_and_a_started_one_does_not() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let started = accepted(&app, &token, &within("sdxl_image_fast", json!(1))).await;
    let late = accepted(&app, &token, &within("sdxl_image_fast", json!(1))).await;
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("gpu");
    let claimed = q.claim(&w, 1).await.unwrap();
    assert_eq!(claimed[0].id.to_string(), started);
    let mut job = Value::Null;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.heartbeat(claimed[0].id, &w).await.unwrap();
        job = app.get_job(&token, &late).await.json().await.unwrap();
        if job["job"]["status"] == "failed" {
            break;
        }
    }
    assert_eq!(job["job"]["status"], "failed", "{job}");
    assert_eq!(job["job"]["errorCode"], "start_deadline_exceeded", "{job}");
    assert_eq!(
        app.status_of(&started).await,
        "queued",
        "claimed in time: it runs"
    );
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let events = gpuq_queue::read_events(
        &mut conn,
        &app.namespace,
        late.parse().unwrap(),
        "0",
        Duration::ZERO,
    )
    .await
    .unwrap();
    let last = &events.last().unwrap().1;
    assert_eq!(last.status, JobStatus::Failed);
    assert_eq!(last.code.as_deref(), Some("start_deadline_exceeded"));
    assert_eq!(app.waiting("sdxl_queue").await, 0);
}

#[tokio::test]
async fn a_job_the_queue_cannot_start_in_time_is_refused_at_once_and_nothing_is_written() {
    let app = spawn_app().await;
    // One live worker with one slot; video_high runs 280 s by the catalog.
    let q = app.queue("wan_queue").await;
    q.claim_as(&ConsumerName::unique("gpu"), 1, Some(1))
        .await
        .unwrap();
    let flooder = token_for(Uuid::new_v4());
    for _ in 0..3 {
        app.enqueued(&flooder, "video_high").await;
    }
    // The same user: behind its own three jobs, about 3 × 145 s away.
    let res = app
        .post_job(&flooder, &within("video_high", json!(60)))
        .await;
    let body = assert_error(res, 429, "deadline_unreachable").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("predicted wait"),
        "{body}"
    );
    assert_eq!(app.job_count().await, 3);
    assert_eq!(app.waiting("wan_queue").await, 3);
    // Another user's job starts next under the fair share: admitted with the same deadline.
    let other = token_for(Uuid::new_v4());
    accepted(&app, &other, &within("video_high", json!(600))).await;
    assert_eq!(app.waiting("wan_queue").await, 4);
}

#[tokio::test]
async fn a_start_deadline_that_is_not_whole_seconds_up_to_a_day_is_refused() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for bad in [
        json!(0),
        json!(86_401),
        json!("60"),
        json!(1.5),
        json!(-1),
        json!(true),
    ] {
        let res = app.post_job(&token, &within("sdxl_image_fast", bad)).await;
        assert_error(res, 400, "invalid_start_within").await;
    }
    let v2 = json!({ "job_type": "sdxl_image_fast", "prompt": "p", "startWithinSeconds": 0 });
    assert_error(app.post_job(&token, &v2).await, 400, "invalid_start_within").await;
    assert_eq!(app.job_count().await, 0);
    // null is no deadline; 60.0 is a whole number of seconds.
    accepted(&app, &token, &within("sdxl_image_fast", Value::Null)).await;
    accepted(&app, &token, &within("sdxl_image_fast", json!(60.0))).await;
}

#[tokio::test]
async fn a_job_redis_lost_keeps_its_start_deadline_when_the_reconciler_restores_it() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let id = accepted(&app, &token, &within("sdxl_image_fast", json!(2))).await;
    // Redis loses the job (no worker runs): the row stays queued.
    let q = app.queue("sdxl_queue").await;
    q.cancel(id.parse().unwrap()).await.unwrap();
    let mut job = Value::Null;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        job = app.get_job(&token, &id).await.json().await.unwrap();
        if job["job"]["status"] == "failed" {
            break;
        }
    }
    assert_eq!(job["job"]["errorCode"], "start_deadline_exceeded", "{job}");
    assert_eq!(app.waiting("sdxl_queue").await, 0);
}
