//! `etaSeconds` in the enqueue answer: the jobs ahead share the live workers' slots, and run
//! times are what the type's recent completions took (blended with the catalog's figure).

use gpuq_dispatcher::service_times::{blend, eta_from_work, Measured};
use gpuq_queue::ConsumerName;
use gpuq_schemas::JobType;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

async fn enqueue_video_high(app: &TestApp) -> Value {
    enqueue_video_high_as(app, &token_for(Uuid::new_v4())).await
}

async fn enqueue_video_high_as(app: &TestApp, token: &str) -> Value {
    let res = app
        .post_job(token, &job_body("video_high", "a storm"))
        .await;
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_work_ahead_shares_the_slots_the_live_workers_advertised() {
    let app = spawn_app().await;
    // One worker that runs two jobs at once, idle (it claims from an empty queue).
    let q = app.queue("wan_queue").await;
    q.claim_as(&ConsumerName::unique("gpu"), 1, Some(2))
        .await
        .unwrap();
    // One user's three jobs wait behind each other.
    let token = token_for(Uuid::new_v4());
    let first = enqueue_video_high_as(&app, &token).await;
    let third = {
        enqueue_video_high_as(&app, &token).await;
        enqueue_video_high_as(&app, &token).await
    };
    let ahead = third["position"].as_u64().unwrap() - first["position"].as_u64().unwrap();
    assert_eq!(ahead, 2);
    // Nothing measured yet: the catalog's figures (video_high 280 s; a wan_queue job 145 s
    // on average over its eight types).
    let eta = |a: &Value| a["etaSeconds"].as_u64().unwrap();
    assert_eq!(eta(&first), eta_from_work(0, 0, 2, 145.0, 280.0));
    // Two video_high jobs ahead on two slots: one round of their 280 s, not of the
    // queue's mean run time.
    assert_eq!(eta(&third) - eta(&first), 280);
    // The same from GET /v1/jobs/{id} while it waits.
    let id = third["job"]["id"].as_str().unwrap();
    let now: Value = app.get_job(&token, id).await.json().await.unwrap();
    assert_eq!(
        (now["position"].as_u64(), now["etaSeconds"].as_u64()),
        (Some(2), Some(eta(&third)))
    );
}

#[tokio::test]
async fn run_times_come_from_the_types_recent_completions() {
    let app = spawn_app().await;
    for _ in 0..10 {
        enqueue_video_high(&app).await;
    }
    // They ran in 80 s each.
    sqlx::query(
        "UPDATE jobs SET status = 'completed', started_at = now() - interval '80 seconds', \
         completed_at = now() WHERE job_type = 'video_high'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // A second dispatcher on the same database reads the figures afresh.
    let other = spawn_with_settings(app.settings.clone()).await;
    let answer = enqueue_video_high(&other).await;
    let measured = Measured {
        samples: 10,
        mean_seconds: 80.0,
    };
    let own = blend(JobType::VideoHigh, measured);
    assert!((own - (10.0 * 80.0 + 5.0 * 280.0) / 15.0).abs() < 1e-9);
    let others: f64 = [30.0, 90.0, 150.0, 45.0, 100.0, 165.0, 300.0].iter().sum();
    let queue_mean = (10.0 * own + others) / 17.0;
    let position = answer["position"].as_u64().unwrap();
    // The jobs ahead were charged the catalog's 280 s each when they were enqueued (nothing
    // was measured then); the new job's own run is the measure. No live worker: as if one
    // slot served them.
    assert_eq!(
        answer["etaSeconds"].as_u64().unwrap(),
        eta_from_work(position * 280_000, 0, 0, queue_mean, own)
    );
}
