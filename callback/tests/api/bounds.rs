//! What a completion may record and what a report may carry: outputs belong to their job
//! and are at most what it asked for; text PostgreSQL cannot store is a 400 that writes
//! nothing; progress is clamped and its message cut.

use gpuq_schemas::{JobEventKind, JobType};
use serde_json::json;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn an_output_under_another_jobs_folder_is_refused_and_never_blocks_that_job() {
    let app = spawn_app().await;
    let a = app.job(JobType::SdxlImageFast).await;
    let mut b = app.job(JobType::SdxlImageFast).await;
    sqlx::query("UPDATE jobs SET user_id = $1 WHERE id = $2")
        .bind(a.user.as_uuid())
        .bind(b.id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    b.user = a.user;
    let b_path = format!("{}/{}/0.png", b.user, b.id);
    for stolen in [
        b_path.clone(),
        format!("{}/sdxl_{}_1700000000_0.png", a.user, b.id),
        format!("{}/{}/x/0.png", a.user, uuid::Uuid::new_v4()),
        format!("{}/elsewhere/0.png", a.user),
    ] {
        let res = app
            .post_callback(&json!({"jobId": a.id, "status": "completed",
                                   "outputs": [{"path": stolen}]}))
            .await;
        assert_eq!(res.status(), 422, "{stolen}");
        assert_eq!(json(res).await["error"]["code"], "output_not_this_job");
    }
    assert!(app.images(a.id).await.is_empty());
    let res = app
        .post_callback(&json!({"jobId": b.id, "status": "completed",
                               "outputs": [{"path": b_path}]}))
        .await;
    assert_eq!(
        json(res).await["ignored"],
        false,
        "B completes with its own path"
    );
    // The legacy forms that name the job, or name no job, are its own.
    let res = app
        .post_callback(&json!({"jobId": a.id, "status": "completed", "outputs": [
            {"path": format!("{}/sdxl_{}_1700000000_0.png", a.user, a.id)}
        ]}))
        .await;
    assert_eq!(json(res).await["ignored"], false);
}

#[tokio::test]
async fn more_outputs_than_the_job_asked_for_are_refused() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    sqlx::query(
        "UPDATE jobs SET envelope = jsonb_set(envelope, '{config,num_images}', '1') WHERE id = $1",
    )
    .bind(job.id.as_uuid())
    .execute(&app.db)
    .await
    .unwrap();
    for n in [2, 10_000] {
        let outputs: Vec<_> = (0..n)
            .map(|i| json!({"path": format!("{i}.png")}))
            .collect();
        let res = app
            .post_callback(&json!({"jobId": job.id, "status": "completed", "outputs": outputs}))
            .await;
        assert_eq!(res.status(), 422, "{n} outputs");
        let answer = json(res).await;
        assert_eq!(answer["error"]["code"], "too_many_outputs");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1"));
    }
    assert!(app.images(job.id).await.is_empty());
    let video = app.job(JobType::VideoFast).await;
    let res = app
        .post_callback(
            &json!({"jobId": video.id, "status": "completed", "outputs": [
                {"path": video.key("a.mp4")}, {"path": video.key("b.mp4")}
            ]}),
        )
        .await;
    assert_eq!(json(res).await["error"]["code"], "too_many_outputs");
}

#[tokio::test]
async fn nul_anywhere_in_a_callback_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let nul = "a\u{0}b";
    for (body, field) in [
        (
            json!({"jobId": job.id, "status": "failed", "error": {"message": nul}}),
            ".error.message",
        ),
        (
            json!({"jobId": job.id, "status": "processing", "workerId": nul}),
            ".workerId",
        ),
        (
            json!({"jobId": job.id, "status": "completed", "enhancedPrompt": nul,
                "outputs": [{"path": job.key("a.png")}]}),
            ".enhancedPrompt",
        ),
        (
            json!({"jobId": job.id, "status": "completed",
                "outputs": [{"path": job.key("a.png"), "metadata": {"k": [nul]}}]}),
            ".outputs[0].metadata.k[0]",
        ),
        (
            json!({"job_id": job.id, "status": "failed", "error_message": nul}),
            ".error_message",
        ),
    ] {
        let res = app.post_callback(&body).await;
        assert_eq!(res.status(), 400, "{field}");
        let answer = json(res).await;
        assert_eq!(answer["error"]["code"], "unstorable_text");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    let row = app.job_row(job.id).await;
    assert_eq!((row.status.as_str(), row.error_message), ("queued", None));
    assert!(app.images(job.id).await.is_empty());
}

#[tokio::test]
async fn progress_is_clamped_to_zero_to_one_and_its_message_cut() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    for fraction in [1e30, -5.0] {
        app.post_callback(&json!({"jobId": job.id, "status": "progress",
                                  "progress": {"fraction": fraction, "message": "x".repeat(200_000)}}))
            .await;
    }
    let events = app.events(job.id).await;
    let progress: Vec<_> = events
        .iter()
        .filter(|e| e.kind == JobEventKind::Progress)
        .collect();
    assert_eq!(progress.len(), 2);
    assert_eq!(progress[0].progress, Some(1.0));
    assert_eq!(progress[1].progress, Some(0.0));
    assert!(progress
        .iter()
        .all(|e| e.message.as_ref().unwrap().chars().count() == 500));
}
