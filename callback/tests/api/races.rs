//! Repeats and races: concurrent identical callbacks record exactly once.

use gpuq_schemas::JobType;
use serde_json::json;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn fifty_identical_concurrent_completed_callbacks_record_exactly_one_set_of_rows() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageHigh).await;
    let body = app
        .as_holder(&json!({"jobId": job.id, "status": "completed", "outputs": [
            {"path": job.key("0.png")}, {"path": job.key("1.png")}, {"path": job.key("2.png")}
        ]}))
        .await;
    // Signed at different seconds or not, every copy but one changes nothing: the first
    // terminal report wins, a signature seen applied is a replay, and a copy of a request
    // still being applied gets a 503 (its sender retries, signed afresh).
    let answers = futures_util::future::join_all((0..50).map(|_| app.post_exact(&body))).await;
    let mut recorded = 0;
    for res in answers {
        if res.status() == 503 {
            assert_eq!(json(res).await["error"]["code"], "unavailable");
            continue;
        }
        assert_eq!(res.status(), 200);
        let answer = json(res).await;
        if answer["ignored"] == false {
            assert_eq!(answer["status"], "completed");
            recorded += 1;
        } else {
            let reason = answer["reason"].as_str().unwrap();
            assert!(
                ["replayed", "job_finished", "not_in_flight"].contains(&reason),
                "{answer}"
            );
        }
    }
    assert_eq!(recorded, 1, "exactly one callback records the result");
    assert_eq!(app.images(job.id).await.len(), 3);
    let completed_events = app
        .events(job.id)
        .await
        .into_iter()
        .filter(|e| e.is_terminal())
        .count();
    assert_eq!(completed_events, 1);
}

#[tokio::test]
async fn a_repeated_processing_callback_is_harmless() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = json!({"jobId": job.id, "status": "processing"});
    for _ in 0..3 {
        assert_eq!(app.post_callback(&body).await.status(), 200);
    }
    let row = app.job_row(job.id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("processing", 1));
    assert_eq!(app.events(job.id).await.len(), 1, "one change, one event");
}
