//! What the replaced workers report (`../shared/LEGACY.md`) ends up in the records: seeds
//! per image, dimensions and durations in their columns, the generation time, the start and
//! the worker; transient failures are retried; extra fields are tolerated.

use gpuq_schemas::JobType;
use serde_json::json;

use crate::helpers::{json, spawn_app, TestApp, TestJob};

/// `(seed, width, height)` of each image, by index.
async fn image_columns(
    app: &TestApp,
    job: &TestJob,
) -> Vec<(Option<i64>, Option<i32>, Option<i32>)> {
    sqlx::query_as("SELECT seed, width, height FROM images WHERE job_id = $1 ORDER BY image_index")
        .bind(job.id.as_uuid())
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_v1_callback_records_each_images_seed_the_generation_time_the_start_and_the_worker() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_exact(&json!({
            "job_id": job.id, "status": "completed",
            "assets": [job.key("sdxl_0.png"), job.key("sdxl_1.png"), job.key("sdxl_2.png")],
            "metadata": {"seed": 1, "generation_time": 4.2, "num_images": 3,
                         "final_prompt": "a fox, golden hour", "enhancement_strategy": "none"}
        }))
        .await;
    assert_eq!(res.status(), 200, "{}", json(res).await);
    let seeds: Vec<_> = image_columns(&app, &job)
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(seeds, [Some(1), Some(2), Some(3)]);
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "completed");
    assert!(row.started_at.is_some(), "started when claimed");
    assert!(row.started_at <= row.completed_at);
    assert_eq!(row.worker_id.as_deref(), Some(job.consumer.as_str()));
    assert_eq!(row.enhanced_prompt.as_deref(), Some("a fox, golden hour"));
    let generation: Option<f64> =
        sqlx::query_scalar("SELECT generation_seconds FROM jobs WHERE id = $1")
            .bind(job.id.as_uuid())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(generation, Some(4.2));
}

#[tokio::test]
async fn a_v2_asset_objects_seed_width_and_height_go_into_their_columns() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let asset = |i: u32, seed: Option<u32>| {
        let mut meta = json!({"width": 1024, "height": 768, "format": "png", "asset_index": i});
        if let Some(seed) = seed {
            meta["seed"] = seed.into();
        }
        json!({"type": "image", "url": job.key(&format!("{i}.png")), "metadata": meta})
    };
    let res = app
        .post_exact(&json!({
            "jobId": job.id, "status": "completed", "completedAt": "2026-11-28T00:00:00Z",
            "assets": [asset(0, Some(70)), asset(1, None)],
            "metadata": {"seed": 50}, "gpu": "A100"
        }))
        .await;
    assert_eq!(res.status(), 200, "{}", json(res).await);
    assert_eq!(
        image_columns(&app, &job).await,
        [
            (Some(70), Some(1024), Some(768)),
            (Some(51), Some(1024), Some(768))
        ]
    );
}

#[tokio::test]
async fn a_legacy_video_records_its_duration() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    let res = app
        .post_exact(&json!({
            "job_id": job.id, "status": "completed",
            "assets": [{"type": "video", "url": job.key("0.mp4"), "thumbnail_url": job.key("0.thumb.webp"),
                        "metadata": {"duration": 5.2, "width": 832, "height": 480, "seed": 9}}]
        }))
        .await;
    assert_eq!(res.status(), 200, "{}", json(res).await);
    let (duration, seed): (Option<f64>, Option<i64>) =
        sqlx::query_as("SELECT duration_seconds, seed FROM videos WHERE job_id = $1")
            .bind(job.id.as_uuid())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((duration, seed), (Some(5.2), Some(9)));
}

#[tokio::test]
async fn a_transient_legacy_failure_is_retried_and_a_permanent_one_is_not() {
    let app = spawn_app().await;
    let keys = app.queue(JobType::SdxlImageFast).keys().clone();
    let oom = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let res = app
        .post_exact(&json!({"job_id": oom.id, "status": "failed",
            "error_message": "RuntimeError: CUDA error: out of memory",
            "metadata": {"error_type": "RuntimeError", "job_type": "sdxl_image_fast"}}))
        .await;
    assert_eq!(res.status(), 200);
    assert!(app.in_set(keys.delayed(), oom.id).await, "retried later");
    assert_eq!(app.job_row(oom.id).await.status, "queued");

    let refused = app.job_with(JobType::SdxlImageFast, 3, true).await;
    let res = app
        .post_exact(&json!({"jobId": refused.id, "status": "failed", "error": "prompt refused by the safety filter"}))
        .await;
    assert_eq!(res.status(), 200);
    assert!(app.in_set(keys.dead(), refused.id).await, "dead-lettered");
    assert_eq!(app.job_row(refused.id).await.status, "failed");
}

#[tokio::test]
async fn a_v1_early_processing_report_without_a_fence_counts_for_the_holder() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    let res = app
        .post_exact(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["ignored"], false);
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "processing");
    assert_eq!(row.worker_id.as_deref(), Some(job.consumer.as_str()));
}

#[tokio::test]
async fn a_typo_in_a_canonical_report_is_still_a_400_naming_it() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_exact(&json!({"jobId": job.id, "status": "completed", "outputz": []}))
        .await;
    assert_eq!(res.status(), 400);
    assert!(json(res).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("outputz"));
}

/// Posts `body` signed the replaced workers' newest way: HMAC of the raw body, no timestamp.
async fn post_body_signed(app: &TestApp, body: &serde_json::Value) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = gpuq_schemas::signature::sign_body(crate::helpers::SECRETS[0].as_bytes(), &raw);
    app.http
        .post(format!("{}/v1/callback", app.address))
        .header("Content-Type", "application/json")
        .header(gpuq_schemas::signature::SIGNATURE_HEADER, sig)
        .body(raw)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_timestampless_signature_is_refused_unless_configured() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = json!({"job_id": job.id, "status": "processing"});
    assert_eq!(post_body_signed(&app, &body).await.status(), 401);
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn a_configured_timestampless_signature_applies_a_legacy_report_once_and_nothing_else() {
    let app = crate::helpers::spawn_app_with(|s| s.auth.legacy_body_signatures = true).await;
    let job = app.job(JobType::SdxlImageFast).await;
    let done = json!({"job_id": job.id, "status": "completed", "assets": [job.key("0.png")],
        "metadata": {"seed": 3}});
    let res = post_body_signed(&app, &done).await;
    assert_eq!(res.status(), 200, "{}", json(res).await);
    assert_eq!(app.job_row(job.id).await.status, "completed");
    // The same captured request again, however late: remembered, never applied twice.
    let again = json(post_body_signed(&app, &done).await).await;
    assert_eq!(
        (again["ignored"].as_bool(), again["reason"].as_str()),
        (Some(true), Some("replayed"))
    );
    // A canonical report must carry a timestamp.
    let other = app.job(JobType::SdxlImageFast).await;
    let canonical = app
        .as_holder(&json!({"jobId": other.id, "status": "processing"}))
        .await;
    assert_eq!(post_body_signed(&app, &canonical).await.status(), 401);
}
