use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_user_with_too_many_active_jobs_gets_429_with_retry_after() {
    let app = spawn_app_with(|s| s.limits.max_active_jobs_per_user = 2).await;
    let token = token_for(Uuid::new_v4());
    for _ in 0..2 {
        assert_eq!(
            app.post_job(&token, &job_body("sdxl_image_fast", "x"))
                .await
                .status()
                .as_u16(),
            202
        );
    }
    let resp = app
        .post_job(&token, &job_body("sdxl_image_fast", "x"))
        .await;
    assert!(resp.headers().get("retry-after").is_some());
    assert_error(resp, 429, "too_many_active_jobs").await;
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (2, 2)
    );
    assert_eq!(
        app.post_job(
            &token_for(Uuid::new_v4()),
            &job_body("sdxl_image_fast", "x")
        )
        .await
        .status()
        .as_u16(),
        202
    );
}

#[tokio::test]
async fn a_user_over_the_request_rate_gets_429_rate_limited() {
    let app = spawn_app_with(|s| {
        s.limits.requests_per_second = 0.01;
        s.limits.burst = 2;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    for _ in 0..2 {
        assert_eq!(
            app.post_job(&token, &job_body("sdxl_image_fast", "x"))
                .await
                .status()
                .as_u16(),
            202
        );
    }
    let resp = app
        .post_job(&token, &job_body("sdxl_image_fast", "x"))
        .await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_error(resp, 429, "rate_limited").await;
    assert_eq!(app.job_count().await, 2);
}

#[tokio::test]
async fn a_full_queue_answers_429_queue_full_and_leaves_no_row() {
    let app = spawn_app_with(|s| s.queue.max_depth = 1).await;
    let token = token_for(Uuid::new_v4());
    assert_eq!(
        app.post_job(&token, &job_body("sdxl_image_fast", "x"))
            .await
            .status()
            .as_u16(),
        202
    );
    let resp = app
        .post_job(&token, &job_body("sdxl_image_fast", "y"))
        .await;
    let body: Value = assert_error(resp, 429, "queue_full").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sdxl_queue"));
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (1, 1)
    );
}

#[tokio::test]
async fn concurrent_enqueues_never_overshoot_the_active_job_limit() {
    // The count and the insert happen in one PostgreSQL function under the user's lock;
    // if the count saw a snapshot from before the lock, these would all count 0.
    let app = spawn_app_with(|s| {
        s.limits.max_active_jobs_per_user = 3;
        s.limits.requests_per_second = 1_000.0;
        s.limits.burst = 1_000;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let body = job_body("sdxl_image_fast", "race");
    let answers =
        futures_util::future::join_all((0..24).map(|_| app.post_job(&token, &body))).await;
    let mut accepted = 0;
    for resp in answers {
        match resp.status().as_u16() {
            202 => accepted += 1,
            _ => {
                assert_error(resp, 429, "too_many_active_jobs").await;
            }
        }
    }
    assert_eq!(accepted, 3);
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (3, 3)
    );
}
