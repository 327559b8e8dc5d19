//! Quarantined workers (ADR 0019): what an admin sees, the release, and the reconciler
//! keeping Redis in line with the record. (The callback service's tests show how a worker
//! gets quarantined.)

use serde_json::{json, Value};
use uuid::Uuid;

use gpuq_queue::{ConsumerName, EnqueueOptions, Queue, QueueError};

use crate::helpers::*;

const QUEUE: &str = "sdxl_queue";

/// Quarantines `consumer` as the callback service does: the row, then the queue's field.
async fn quarantine(app: &TestApp, q: &Queue, consumer: &ConsumerName, in_redis: bool) {
    let evidence = json!([{"jobId": Uuid::new_v4(), "attempt": 1, "jobType": "sdxl_image_fast",
                           "finishedAt": "2026-11-28T10:00:00Z", "error": "CUDA error"}]);
    sqlx::query(
        "INSERT INTO worker_quarantine (queue, consumer, reason, evidence) VALUES ($1, $2, $3, $4)",
    )
    .bind(QUEUE)
    .bind(consumer.as_str())
    .bind("its last 5 attempts failed, on 4 different jobs")
    .bind(evidence)
    .execute(&app.db)
    .await
    .unwrap();
    if in_redis {
        q.quarantine(consumer, "its last 5 attempts failed, on 4 different jobs")
            .await
            .unwrap();
    }
}

async fn release(app: &TestApp, consumer: &str, token: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/admin/workers/{consumer}/release")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_sees_a_quarantined_worker_with_its_evidence_and_its_release_lets_it_claim_again()
{
    let app = spawn_app().await;
    let q = app.queue(QUEUE).await;
    let sick = ConsumerName::unique("sick-gpu");
    quarantine(&app, &q, &sick, true).await;
    let mut env = gpuq_service::testkit::envelope(gpuq_schemas::JobType::SdxlImageFast);
    env.queue = QUEUE.parse().unwrap();
    q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
    assert!(matches!(
        q.claim(&sick, 1).await,
        Err(QueueError::Quarantined(_))
    ));

    let body: Value = app.admin_get("/admin/workers").await.json().await.unwrap();
    let listed = &body["quarantined"][0];
    assert_eq!(listed["consumer"], sick.as_str());
    assert_eq!(listed["queue"], QUEUE);
    assert_eq!(listed["evidence"][0]["error"], "CUDA error");
    let live = body["workers"].as_array().unwrap();
    let seen = live
        .iter()
        .find(|w| w["consumer"] == sick.as_str())
        .expect("seen alive");
    assert_eq!(
        seen["quarantined"],
        "its last 5 attempts failed, on 4 different jobs"
    );

    assert_error(
        release(&app, sick.as_str(), &token_for(Uuid::new_v4())).await,
        403,
        "admin_required",
    )
    .await;
    assert_error(
        release(&app, "no%20spaces", ADMIN_TOKEN).await,
        400,
        "invalid_consumer",
    )
    .await;
    let res = release(&app, sick.as_str(), ADMIN_TOKEN).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        (answer["consumer"].as_str(), answer["queue"].as_str()),
        (Some(sick.as_str()), Some(QUEUE))
    );
    let by: Option<String> =
        sqlx::query_scalar("SELECT released_by FROM worker_quarantine WHERE consumer = $1")
            .bind(sick.as_str())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(by.as_deref(), Some("admin token"));
    assert_eq!(q.claim(&sick, 1).await.unwrap().len(), 1, "claims again");
    assert_error(
        release(&app, sick.as_str(), ADMIN_TOKEN).await,
        404,
        "not_found",
    )
    .await;
    let body: Value = app.admin_get("/admin/workers").await.json().await.unwrap();
    assert!(body["quarantined"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_reconciler_applies_a_quarantine_redis_lost_and_lifts_one_released_while_redis_was_away(
) {
    let app = spawn_app().await;
    let q = app.queue(QUEUE).await;
    let (lost, released) = (
        ConsumerName::unique("lost"),
        ConsumerName::unique("released"),
    );
    quarantine(&app, &q, &lost, false).await;
    q.quarantine(&released, "an old verdict").await.unwrap();

    // The app's own reconciler may take its first pass at any moment: what counts is that,
    // after a pass, Redis holds what the record says.
    gpuq_dispatcher::quarantine::agree(&app.db, &q)
        .await
        .unwrap();
    let held = q.quarantined().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].0, lost.as_str());
    assert!(matches!(
        q.claim(&lost, 1).await,
        Err(QueueError::Quarantined(_))
    ));
    assert!(q.claim(&released, 1).await.is_ok());
    assert_eq!(
        gpuq_dispatcher::quarantine::agree(&app.db, &q)
            .await
            .unwrap(),
        (0, 0),
        "in line"
    );
}
