//! Overflow and fallback to a hosted provider's queue (ADR 0017): decided at enqueue (no
//! live worker; a predicted start past the bound, under the fair share), revisited by the
//! reconciler for jobs waiting too long, recorded on the row and shown by `GET`.

use std::time::Duration;

use gpuq_queue::ConsumerName;
use gpuq_schemas::JobType;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;
use gpuq_dispatcher::overflow::OverflowRule;

fn rule(queue: &str, start_over_secs: Option<u32>, when_no_worker: bool) -> OverflowRule {
    serde_json::from_value(json!({
        "queue": queue, "start_over_secs": start_over_secs, "when_no_worker": when_no_worker
    }))
    .unwrap()
}

async fn post(app: &TestApp, token: &str, job_type: &str) -> Value {
    let res = app
        .post_job(token, &job_body(job_type, "a lighthouse"))
        .await;
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

async fn row(app: &TestApp, id: &str) -> (String, Option<String>, String) {
    sqlx::query_as("SELECT queue, routed, envelope->>'queue' FROM jobs WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_goes_to_its_provider_while_no_worker_serves_its_queue_and_stays_once_one_does() {
    let app = spawn_app_with(|s| {
        s.overflow
            .insert(JobType::SdxlImageFast, rule("sdxl-replicate", None, true));
    })
    .await;
    let token = token_for(Uuid::new_v4());
    // Nothing serves the provider's queue either: the job waits for its own fleet.
    let stranded = post(&app, &token, "sdxl_image_fast").await;
    assert_eq!(where_(&stranded), ("sdxl_queue".into(), Value::Null));
    provider_worker(&app, "sdxl-replicate").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = post(&app, &token, "sdxl_image_fast").await;
    assert_eq!(answer["queue"], "sdxl-replicate", "{answer}");
    assert_eq!(answer["job"]["routed"], "no_live_worker", "{answer}");
    let id = answer["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        row(&app, &id).await,
        (
            "sdxl-replicate".into(),
            Some("no_live_worker".into()),
            "sdxl-replicate".into()
        )
    );
    let got: Value = app.get_job(&token, &id).await.json().await.unwrap();
    assert_eq!(got["job"]["routed"], "no_live_worker");
    assert_eq!(got["job"]["queue"], "sdxl-replicate");
    assert!(
        got["position"].is_u64(),
        "the provider queue forecasts it: {got}"
    );
    // A type without a rule waits for its own fleet.
    let other = post(&app, &token, "sdxl_image_high").await;
    assert_eq!(other["queue"], "sdxl_queue");
    assert!(other["job"]["routed"].is_null());
    // The provider worker gets the job with its queue's name in the envelope.
    let provider = app.queue("sdxl-replicate").await;
    let claimed = provider
        .claim(&ConsumerName::unique("replicate"), 1)
        .await
        .unwrap();
    assert_eq!(claimed[0].id.to_string(), id);
    let envelope: Value = serde_json::from_str(&claimed[0].payload).unwrap();
    assert_eq!(envelope["queue"], "sdxl-replicate");

    // A GPU worker comes up; a second later (the snapshot's age) jobs stay home.
    let own = app.queue("sdxl_queue").await;
    own.claim_as(&ConsumerName::unique("gpu"), 0, Some(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let home = post(&app, &token, "sdxl_image_fast").await;
    assert_eq!(home["queue"], "sdxl_queue", "{home}");
    assert!(home["job"]["routed"].is_null());
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(
            "gpuq_jobs_routed_total{job_type=\"sdxl_image_fast\",queue=\"sdxl-replicate\",reason=\"no_live_worker\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_job_its_fleet_would_start_too_late_overflows_by_its_fair_share_position() {
    let app = spawn_app_with(|s| {
        s.overflow
            .insert(JobType::VideoHigh, rule("wan-replicate", Some(200), false));
    })
    .await;
    // One GPU worker with one slot: a video_high job ahead is about 145 s of waiting. The
    // provider runs many at once.
    app.queue("wan_queue")
        .await
        .claim_as(&ConsumerName::unique("gpu"), 0, Some(1))
        .await
        .unwrap();
    provider_worker(&app, "wan-replicate").await;
    let flooder = token_for(Uuid::new_v4());
    let first = post(&app, &flooder, "video_high").await;
    assert_eq!(
        where_(&first),
        ("wan_queue".into(), Value::Null),
        "nothing ahead"
    );
    // One ahead (about 145 s) is within the rule's 200 s but past its own 100 s deadline:
    // the provider can meet it, so it goes there rather than being refused.
    let body = json!({ "jobType": "video_high", "metadata": { "prompt": "p" }, "startWithinSeconds": 100 });
    let res = app.post_job(&flooder, &body).await;
    assert_eq!(res.status(), 202);
    let hurried: Value = res.json().await.unwrap();
    assert_eq!(
        where_(&hurried),
        ("wan-replicate".into(), json!("start_over_limit"))
    );
    let second = post(&app, &flooder, "video_high").await;
    assert_eq!(
        where_(&second),
        ("wan_queue".into(), Value::Null),
        "one ahead: about 145 s"
    );
    let third = post(&app, &flooder, "video_high").await;
    assert_eq!(
        where_(&third),
        ("wan-replicate".into(), json!("start_over_limit")),
        "two ahead: past 200 s"
    );
    // Another tenant starts next under the fair share: its own fleet keeps it.
    let other = post(&app, &token_for(Uuid::new_v4()), "video_high").await;
    assert_eq!(other["queue"], "wan_queue", "{other}");
    assert_eq!(app.waiting("wan_queue").await, 3);
    assert_eq!(app.waiting("wan-replicate").await, 2);
}

fn where_(answer: &Value) -> (String, Value) {
    (
        answer["queue"].as_str().unwrap().to_owned(),
        answer["job"]["routed"].clone(),
    )
}

/// A provider worker: seen by its queue, with room for a hundred jobs at once.
async fn provider_worker(app: &TestApp, queue: &str) {
    app.queue(queue)
        .await
        .claim_as(&ConsumerName::unique("replicate"), 0, Some(100))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_reconciler_moves_a_job_waiting_past_its_bound_but_never_a_started_one() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 200;
        s.overflow.insert(
            JobType::SdxlImageFast,
            rule("sdxl-replicate", Some(1), false),
        );
    })
    .await;
    let own = app.queue("sdxl_queue").await;
    let gpu = ConsumerName::unique("gpu");
    own.claim_as(&gpu, 0, Some(4)).await.unwrap();
    provider_worker(&app, "sdxl-replicate").await;
    let token = token_for(Uuid::new_v4());
    let started = post(&app, &token, "sdxl_image_fast").await;
    let started_id = started["job"]["id"].as_str().unwrap().to_owned();
    let claimed = own.claim(&gpu, 1).await.unwrap();
    assert_eq!(claimed[0].id.to_string(), started_id);
    let waiting = post(&app, &token, "sdxl_image_fast").await;
    assert_eq!(
        waiting["queue"], "sdxl_queue",
        "accepted at home: {waiting}"
    );
    let id = waiting["job"]["id"].as_str().unwrap().to_owned();
    let mut moved = row(&app, &id).await;
    for _ in 0..50 {
        own.heartbeat(claimed[0].id, &gpu).await.unwrap();
        if moved.0 != "sdxl_queue" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        moved = row(&app, &id).await;
    }
    assert_eq!(
        moved,
        (
            "sdxl-replicate".into(),
            Some("waited_too_long".into()),
            "sdxl-replicate".into()
        )
    );
    assert_eq!(app.waiting("sdxl_queue").await, 0);
    assert_eq!(app.waiting("sdxl-replicate").await, 1);
    assert_eq!(
        row(&app, &started_id).await.0,
        "sdxl_queue",
        "a started job stays"
    );
    // Cancelling follows the job to its new queue.
    let res = app.cancel_job(&token, &id).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.waiting("sdxl-replicate").await, 0);
}
