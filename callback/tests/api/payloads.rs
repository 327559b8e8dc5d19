//! Each accepted payload shape, and the refusals: 400, 404, 413, 422.

use gpuq_schemas::{JobId, JobType};
use serde_json::json;

use crate::helpers::{json, spawn_app, OutputRecord, STORAGE_HOST};

fn image(idx: i32, key: String, seed: Option<i64>) -> OutputRecord {
    OutputRecord {
        idx,
        bucket: "sdxl_image_fast".into(),
        storage_path: key,
        thumbnail_path: None,
        seed,
        prompt: "a lighthouse at dusk".into(),
    }
}

#[tokio::test]
async fn the_canonical_shape_records_one_image_row_per_output_in_order() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(&json!({
            "jobId": job.id, "status": "completed",
            "outputs": [
                {"path": job.key("0.png"), "seed": 7, "width": 1024, "height": 1024},
                {"path": format!("sdxl_image_fast/{}", job.key("1.png")), "seed": 8},
                {"path": "2.png", "metadata": {"nsfw": false}}
            ]
        }))
        .await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(
        body,
        json!({"success": true, "jobId": job.id.to_string(), "status": "completed", "ignored": false})
    );
    assert_eq!(
        app.images(job.id).await,
        vec![
            image(0, job.key("0.png"), Some(7)),
            image(1, job.key("1.png"), Some(8)),
            image(2, job.key("2.png"), None),
        ]
    );
}

#[tokio::test]
async fn the_legacy_camel_shape_with_file_path_completes_the_job() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(&json!({
            "jobId": job.id, "status": "completed", "filePath": job.key("a.png"),
            "enhancedPrompt": "a lighthouse at dusk, golden hour"
        }))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.images(job.id).await,
        vec![image(0, job.key("a.png"), None)]
    );
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "completed");
    assert_eq!(
        row.enhanced_prompt.as_deref(),
        Some("a lighthouse at dusk, golden hour")
    );
}

#[tokio::test]
async fn the_legacy_camel_shape_with_image_urls_records_each_url() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let url = |n: &str| {
        format!(
            "{STORAGE_HOST}/storage/v1/object/public/sdxl_image_fast/{}?token=t",
            job.key(n)
        )
    };
    let res = app
        .post_callback(&json!({
            "jobId": job.id, "status": "completed", "imageUrls": [url("a.png"), url("b.png"), url("c.png")]
        }))
        .await;
    assert_eq!(res.status(), 200);
    let keys: Vec<String> = app
        .images(job.id)
        .await
        .into_iter()
        .map(|r| r.storage_path)
        .collect();
    assert_eq!(keys, [job.key("a.png"), job.key("b.png"), job.key("c.png")]);
}

#[tokio::test]
async fn the_legacy_snake_shape_with_string_assets_completes_the_job() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(&json!({
            "job_id": job.id, "status": "completed",
            "assets": [job.key("a.png"), "/storage/v1/object/sign/workspace-temp/".to_owned() + &job.key("b.png")],
            "metadata": {"seed": 99, "enhanced_prompt": "better"}
        }))
        .await;
    assert_eq!(res.status(), 200);
    let rows = app.images(job.id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], image(0, job.key("a.png"), Some(99)));
    assert_eq!(
        (rows[1].bucket.as_str(), rows[1].storage_path.clone()),
        ("workspace-temp", job.key("b.png"))
    );
    assert_eq!(
        app.job_row(job.id).await.enhanced_prompt.as_deref(),
        Some("better")
    );
}

#[tokio::test]
async fn the_legacy_snake_shape_with_object_assets_records_a_video_with_its_thumbnail() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    let res = app
        .post_callback(&json!({
            "job_id": job.id, "status": "completed",
            "assets": [{"type": "video", "url": job.key("v.mp4"), "thumbnail_url": job.key("v.jpg"),
                        "metadata": {"fps": 16}}]
        }))
        .await;
    assert_eq!(res.status(), 200);
    let rows = app.videos(job.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bucket, "video_fast");
    assert_eq!(rows[0].storage_path, job.key("v.mp4"));
    assert_eq!(rows[0].thumbnail_path, Some(job.key("v.jpg")));
    assert!(app.images(job.id).await.is_empty());
}

#[tokio::test]
async fn the_edge_function_alias_path_accepts_callbacks() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = app
        .as_holder(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    let raw = serde_json::to_vec(&body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let sig = gpuq_schemas::signature::sign(crate::helpers::SECRETS[0].as_bytes(), ts, &raw);
    let res = app
        .post_raw(
            "/functions/v1/job-callback",
            raw,
            Some((ts.to_string(), sig)),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.job_row(job.id).await.status, "processing");
}

#[tokio::test]
async fn json_sent_as_text_is_read_on_the_edge_function_path_and_refused_on_v1() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let body = app
        .as_holder(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    let raw = serde_json::to_vec(&body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let sig = gpuq_schemas::signature::sign(crate::helpers::SECRETS[0].as_bytes(), ts, &raw);
    let post = |path: &str| {
        reqwest::Client::new()
            .post(format!("{}{path}", app.address))
            .header("Content-Type", "text/plain;charset=UTF-8")
            .header(gpuq_schemas::signature::TIMESTAMP_HEADER, ts.to_string())
            .header(gpuq_schemas::signature::SIGNATURE_HEADER, sig.clone())
            .body(raw.clone())
            .send()
    };
    let refused = post("/v1/callback").await.unwrap();
    assert_eq!(refused.status(), 415);
    assert_eq!(app.job_row(job.id).await.status, "queued");
    let read = post("/functions/v1/job-callback").await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(app.job_row(job.id).await.status, "processing");
}

#[tokio::test]
async fn a_malformed_payload_is_rejected_with_400_naming_the_problem() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    for (body, needle) in [
        (
            json!({"jobId": job.id, "status": "done"}),
            "unknown variant `done`",
        ),
        (
            json!({"jobId": job.id, "status": "completed", "outputz": []}),
            "outputz",
        ),
        (json!({"status": "completed"}), "jobId"),
        (json!({"jobId": job.id, "status": "progress"}), "progress"),
    ] {
        let res = app.post_callback(&body).await;
        assert_eq!(res.status(), 400, "{body}");
        let answer = json(res).await;
        assert_eq!(answer["error"]["code"], "invalid_payload");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn a_callback_for_an_unknown_job_is_rejected_with_404() {
    let app = spawn_app().await;
    let res = app
        .post_callback(&json!({"jobId": JobId::new(), "status": "processing"}))
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "job_not_found");
}

#[tokio::test]
async fn an_oversized_body_is_rejected_with_413() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let res = app
        .post_callback(&json!({
            "jobId": job.id, "status": "completed",
            "outputs": [{"path": job.key("a.png"), "metadata": {"pad": "x".repeat(300 * 1024)}}]
        }))
        .await;
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["error"]["code"], "payload_too_large");
    assert!(app.images(job.id).await.is_empty());
}

#[tokio::test]
async fn a_bad_storage_path_is_rejected_with_422_and_nothing_is_written() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    app.post_callback(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    let other = uuid::Uuid::new_v4();
    for bad in [
        format!("{}/../{other}/a.png", job.user),
        format!("{}/%2e%2e/a.png", job.user),
        format!("{other}/a.png"),
        "https://evil.example/a.png".to_owned(),
    ] {
        let res = app
            .post_callback(&json!({
                "jobId": job.id, "status": "completed",
                "outputs": [{"path": job.key("ok.png")}, {"path": bad}]
            }))
            .await;
        assert_eq!(res.status(), 422, "{bad}");
        let answer = json(res).await;
        assert_eq!(answer["error"]["code"], "invalid_storage_path");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("output 1 path"));
    }
    assert!(app.images(job.id).await.is_empty());
    let row = app.job_row(job.id).await;
    assert_eq!(row.status, "processing");
    assert!(row.completed_at.is_none());
    assert!(
        app.in_redis(job.job_type, job.id).await,
        "the job stays in redis"
    );
}

#[tokio::test]
async fn a_storage_path_recorded_for_another_job_is_rejected_with_409_and_nothing_is_written() {
    let app = spawn_app().await;
    let first = app.job(JobType::SdxlImageFast).await;
    let mut second = app.job(JobType::SdxlImageFast).await;
    // Both jobs belong to one user, so the path is inside the second job's prefix too.
    sqlx::query("UPDATE jobs SET user_id = $1 WHERE id = $2")
        .bind(first.user.as_uuid())
        .bind(second.id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    second.user = first.user;
    let done = |job: &crate::helpers::TestJob, names: &[&str]| {
        let outputs: Vec<_> = names.iter().map(|n| json!({"path": job.key(n)})).collect();
        json!({"jobId": job.id, "status": "completed", "attempt": 1, "outputs": outputs})
    };
    let res = app.post_callback(&done(&first, &["shared.png"])).await;
    assert_eq!(res.status(), 200);
    let res = app
        .post_callback(&done(&second, &["own.png", "shared.png"]))
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(json(res).await["error"]["code"], "storage_path_in_use");
    // Nothing of the second job was written, not even its first, unshared output.
    assert!(app.images(second.id).await.is_empty());
    let row = app.job_row(second.id).await;
    assert_ne!(row.status, "completed");
    assert!(row.completed_at.is_none());
    assert_eq!(app.images(first.id).await.len(), 1);
}
