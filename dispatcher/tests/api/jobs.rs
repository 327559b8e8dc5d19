use serde_json::Value;
use uuid::Uuid;

use gpuq_queue::{ConsumerName, LeaseStatus};

use crate::helpers::*;

#[tokio::test]
async fn owners_and_admins_see_a_job_and_everyone_else_gets_404() {
    let app = spawn_app().await;
    let owner = Uuid::new_v4();
    let id = app
        .enqueued(&token_for(owner), "sdxl_image_fast")
        .await
        .to_string();
    let resp = app.get_job(&token_for(owner), &id).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["job"]["status"], "queued");
    assert!(body["images"].as_array().unwrap().is_empty());
    assert_error(
        app.get_job(&token_for(Uuid::new_v4()), &id).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(app.get_job(ADMIN_TOKEN, &id).await.status().as_u16(), 200);
    assert_error(
        app.get_job(&token_for(owner), "not-a-uuid").await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get_job(&token_for(owner), &Uuid::new_v4().to_string())
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn cancelling_a_queued_job_means_it_never_runs() {
    let app = spawn_app().await;
    let owner = Uuid::new_v4();
    let id = app
        .enqueued(&token_for(owner), "sdxl_image_fast")
        .await
        .to_string();
    assert_error(
        app.cancel_job(&token_for(Uuid::new_v4()), &id).await,
        404,
        "not_found",
    )
    .await;
    let resp = app.cancel_job(&token_for(owner), &id).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.status_of(&id).await, "cancelled");
    let q = app.queue("sdxl_queue").await;
    assert!(q
        .claim(&ConsumerName::unique("w"), 10)
        .await
        .unwrap()
        .is_empty());
    assert_error(
        app.cancel_job(&token_for(owner), &id).await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn cancelling_a_running_job_tells_its_worker_at_the_next_heartbeat() {
    // A lease long enough that a slow machine cannot see the job reaped before the cancel.
    let app = spawn_app_with(|s| s.queue.lease_ms = 30_000).await;
    let owner = Uuid::new_v4();
    let id = app
        .enqueued(&token_for(owner), "video_fast")
        .await
        .to_string();
    let q = app.queue("wan_queue").await;
    let worker = ConsumerName::unique("w");
    let claimed = q.claim(&worker, 1).await.unwrap();
    assert_eq!(claimed[0].id.to_string(), id);
    let body: Value = app
        .cancel_job(&token_for(owner), &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["wasRunning"], true);
    assert_eq!(
        q.heartbeat(claimed[0].id, &worker).await.unwrap(),
        LeaseStatus::Cancelled
    );
}
