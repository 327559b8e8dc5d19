//! `etaSeconds` in the enqueue answer: the jobs ahead share the live workers' slots, and run
//! times are what the type's recent completions took (blended with the catalog's figure).

use gpuq_dispatcher::service_times::{blend, eta_seconds, Measured};
use gpuq_queue::ConsumerName;
use gpuq_schemas::JobType;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

async fn enqueue_video_high(app: &TestApp) -> Value {
    let res = app
        .post_job(
            &token_for(Uuid::new_v4()),
            &job_body("video_high", "a storm"),
        )
        .await;
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_jobs_ahead_share_the_slots_the_live_workers_advertised() {
    let app = spawn_app().await;
    // One worker that runs two jobs at once, idle (it claims from an empty queue).
    let q = app.queue("wan_queue").await;
    q.claim_as(&ConsumerName::unique("gpu"), 1, Some(2))
        .await
        .unwrap();
    let first = enqueue_video_high(&app).await;
    let third = {
        enqueue_video_high(&app).await;
        enqueue_video_high(&app).await
    };
    let ahead = third["position"].as_u64().unwrap() - first["position"].as_u64().unwrap();
    assert_eq!(ahead, 2);
    // Nothing measured yet: the catalog's figures (video_high 280 s; a wan_queue job 145 s
    // on average over its eight types).
    let eta = |a: &Value| a["etaSeconds"].as_u64().unwrap();
    assert_eq!(
        eta(&first),
        eta_seconds(first["position"].as_u64().unwrap(), 2, 145.0, 280.0)
    );
    // Two jobs ahead on two slots: one more round of 145 s, not two rounds of 280 s.
    assert_eq!(eta(&third) - eta(&first), 145);
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
    // No live worker: the jobs ahead count as if one slot served them.
    assert_eq!(
        answer["etaSeconds"].as_u64().unwrap(),
        eta_seconds(position, 0, queue_mean, own)
    );
    assert!(answer["etaSeconds"].as_u64().unwrap() < 280 + position * 145);
}
