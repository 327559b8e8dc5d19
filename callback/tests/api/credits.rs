//! Credits and metering as the callback service's transitions move them: a completion
//! settles the job's hold once, however many copies of the report arrive; every other end
//! releases it; a metered job pays for the GPU-seconds of the attempt that completed it,
//! not for attempts the fleet lost. The hold is taken with the dispatcher's own SQL
//! (`gpuq_hold_credits`), as an enqueue with credits on does.

use std::time::Duration;

use gpuq_queue::ConsumerName;
use gpuq_schemas::{JobId, JobType};
use serde_json::json;

use crate::helpers::*;

/// Credits a test tenant starts with.
const GRANT: i64 = 100;

/// Holds `amount` for `job` from its owner's account (created with [`GRANT`]).
async fn hold(app: &TestApp, job: &TestJob, amount: i64, per_gpu_second: Option<f64>) {
    let held: bool =
        sqlx::query_scalar("SELECT held_ok FROM gpuq_hold_credits($1, $2, $3, $4, $5)")
            .bind(job.id.as_uuid())
            .bind(job.user.to_string())
            .bind(amount)
            .bind(per_gpu_second)
            .bind(GRANT)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(held);
}

/// (balance, held) of the job owner's account.
async fn account(app: &TestApp, job: &TestJob) -> (i64, i64) {
    sqlx::query_as("SELECT balance, held FROM credit_accounts WHERE tenant = $1")
        .bind(job.user.to_string())
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// The kinds of the job's ledger entries, in order.
async fn entries(app: &TestApp, id: JobId) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM credit_ledger WHERE job_id = $1 ORDER BY id")
        .bind(id.as_uuid())
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// Rows of the `credit_violations` view: every way the ledger and the accounts disagree.
async fn violations(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT kind || ': ' || detail FROM credit_violations")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// (attempt, outcome, gpu_name, gpu_seconds) of the job's metering rows.
async fn attempts(app: &TestApp, id: JobId) -> Vec<(i32, String, Option<String>, f64)> {
    sqlx::query_as(
        "SELECT attempt, outcome, gpu_name, gpu_seconds FROM job_attempts \
         WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(id.as_uuid())
    .fetch_all(&app.db)
    .await
    .unwrap()
}

fn completed(job: &TestJob) -> serde_json::Value {
    json!({"jobId": job.id, "status": "completed", "gpu": "NVIDIA L40S",
           "outputs": [{"path": job.key("a.png")}]})
}

#[tokio::test]
async fn fifty_identical_concurrent_completions_settle_the_hold_exactly_once() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageHigh).await;
    hold(&app, &job, 6, None).await;
    let body = app.as_holder(&completed(&job)).await;
    let posts = (0..50).map(|_| app.post_exact(&body));
    let answers = futures_util::future::join_all(posts).await;
    // A copy that arrives while another is being applied gets a 503 (races.rs); none fails.
    assert!(answers
        .iter()
        .all(|r| r.status().is_success() || r.status() == 503));

    assert_eq!(entries(&app, job.id).await, ["hold", "settle"]);
    assert_eq!(account(&app, &job).await, (GRANT - 6, 0));
    assert!(violations(&app).await.is_empty());
    let rows = attempts(&app, job.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "completed");
    assert_eq!(rows[0].2.as_deref(), Some("NVIDIA L40S"));
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_the_job_and_releases_its_hold() {
    let app = spawn_app().await;
    let job = app.job(JobType::ImageFast).await;
    hold(&app, &job, 1, None).await;
    let failed = json!({"jobId": job.id, "status": "failed",
                        "error": {"message": "bad input", "retryable": false}});
    assert!(app.post_callback(&failed).await.status().is_success());

    assert_eq!(app.job_row(job.id).await.status, "failed");
    assert_eq!(entries(&app, job.id).await, ["hold", "release"]);
    assert_eq!(account(&app, &job).await, (GRANT, 0));
    assert_eq!(attempts(&app, job.id).await[0].1, "failed");
    assert!(violations(&app).await.is_empty());
}

#[tokio::test]
async fn a_retryable_failure_keeps_the_hold_for_the_next_attempt() {
    let app = spawn_app().await;
    let job = app.job(JobType::ImageFast).await;
    hold(&app, &job, 1, None).await;
    let failed = json!({"jobId": job.id, "status": "failed",
                        "error": {"message": "CUDA out of memory", "retryable": true}});
    assert!(app.post_callback(&failed).await.status().is_success());

    assert_eq!(app.job_row(job.id).await.status, "queued");
    assert_eq!(entries(&app, job.id).await, ["hold"]);
    assert_eq!(account(&app, &job).await, (GRANT, 1));
    assert_eq!(attempts(&app, job.id).await[0].1, "retried");

    app.redeliver(&job, &ConsumerName::unique("second")).await;
    assert!(app
        .post_callback(&completed(&job))
        .await
        .status()
        .is_success());
    assert_eq!(entries(&app, job.id).await, ["hold", "settle"]);
    assert_eq!(account(&app, &job).await, (GRANT - 1, 0));
    let outcomes: Vec<_> = attempts(&app, job.id)
        .await
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(outcomes, ["retried", "completed"]);
}

#[tokio::test]
async fn a_metered_job_pays_its_measured_gpu_seconds_times_the_rate_rounded_up() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    hold(&app, &job, 50, Some(10.0)).await;
    let started = json!({"jobId": job.id, "status": "processing", "gpu": "NVIDIA H100"});
    assert!(app.post_callback(&started).await.status().is_success());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(app
        .post_callback(&completed(&job))
        .await
        .status()
        .is_success());

    let rows = attempts(&app, job.id).await;
    let secs = rows[0].3;
    assert!((1.2..5.0).contains(&secs), "{rows:?}");
    assert_eq!(
        rows[0].2.as_deref(),
        Some("NVIDIA H100"),
        "the start's GPU is kept"
    );
    let charge = (secs * 10.0).ceil() as i64;
    assert_eq!(account(&app, &job).await, (GRANT - charge, 0));
    let settled: (i64, f64) = sqlx::query_as(
        "SELECT -balance_delta, gpu_seconds FROM credit_ledger WHERE job_id = $1 AND kind = 'settle'",
    )
    .bind(job.id.as_uuid())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(settled, (charge, secs));
}

#[tokio::test]
async fn a_metered_job_never_pays_more_than_its_hold() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    hold(&app, &job, 3, Some(1000.0)).await;
    let started = json!({"jobId": job.id, "status": "processing"});
    assert!(app.post_callback(&started).await.status().is_success());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(app
        .post_callback(&completed(&job))
        .await
        .status()
        .is_success());
    assert_eq!(account(&app, &job).await, (GRANT - 3, 0));
}

#[tokio::test]
async fn an_attempt_the_fleet_lost_costs_the_user_nothing() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    hold(&app, &job, 100, Some(10.0)).await;
    // The first worker starts, runs a while, and vanishes: its lease runs out.
    let started = json!({"jobId": job.id, "status": "processing"});
    assert!(app.post_callback(&started).await.status().is_success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.expire_lease(JobType::VideoFast, job.id).await;
    sqlx::query("UPDATE jobs SET status = 'queued' WHERE id = $1")
        .bind(job.id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    // A second worker runs it quickly.
    app.claim(JobType::VideoFast, &ConsumerName::unique("second"), job.id)
        .await;
    assert!(app.post_callback(&started).await.status().is_success());
    assert!(app
        .post_callback(&completed(&job))
        .await
        .status()
        .is_success());

    let rows = attempts(&app, job.id).await;
    let outcomes: Vec<_> = rows.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(outcomes, ["lost", "completed"]);
    assert!(
        rows[0].3 >= 1.5,
        "the lost attempt's time is recorded: {rows:?}"
    );
    let charge = (rows[1].3 * 10.0).ceil() as i64;
    assert!(
        charge < 15,
        "only the completing attempt is charged: {charge}"
    );
    assert_eq!(account(&app, &job).await, (GRANT - charge, 0));
}

#[tokio::test]
async fn an_attempt_taken_for_lost_that_completes_after_all_is_charged_as_measured() {
    let app = spawn_app().await;
    let job = app.job(JobType::VideoFast).await;
    hold(&app, &job, 100, Some(10.0)).await;
    let started = app
        .as_holder(&json!({"jobId": job.id, "status": "processing"}))
        .await;
    assert!(app.post_exact(&started).await.status().is_success());
    // The reaper's view reaches PostgreSQL (processing → queued: the attempt is `lost`)
    // while the worker, still holding its claim, finishes.
    sqlx::query("UPDATE jobs SET status = 'queued' WHERE id = $1")
        .bind(job.id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    assert!(app
        .post_callback(&completed(&job))
        .await
        .status()
        .is_success());
    let rows = attempts(&app, job.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "completed");
    let charge = (rows[0].3 * 10.0).ceil() as i64;
    assert!(charge < 100, "measured, not the whole hold: {charge}");
    assert_eq!(account(&app, &job).await, (GRANT - charge, 0));
}

#[tokio::test]
async fn a_replayed_processing_report_keeps_the_attempts_first_start() {
    let app = spawn_app().await;
    let job = app.job(JobType::ImageFast).await;
    let started = app
        .as_holder(&json!({"jobId": job.id, "status": "processing", "gpu": "A"}))
        .await;
    assert!(app.post_exact(&started).await.status().is_success());
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT started_at FROM job_attempts WHERE job_id = $1")
            .bind(job.id.as_uuid())
            .fetch_one(&app.db)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut again = started.clone();
    again["gpu"] = "B".into();
    assert!(app.post_exact(&again).await.status().is_success());
    let (start, gpu): (chrono::DateTime<chrono::Utc>, String) =
        sqlx::query_as("SELECT started_at, gpu_name FROM job_attempts WHERE job_id = $1")
            .bind(job.id.as_uuid())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((start, gpu.as_str()), (first, "A"));
}

#[tokio::test]
async fn a_gpu_name_that_is_empty_or_too_long_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let job = app.job(JobType::ImageFast).await;
    for gpu in [String::new(), "x".repeat(129)] {
        let body = json!({"jobId": job.id, "status": "processing", "gpu": gpu});
        let response = app.post_callback(&body).await;
        assert_eq!(response.status().as_u16(), 400);
        let body = json(response).await;
        assert!(body["error"]["message"].as_str().unwrap().contains("gpu"));
    }
    assert!(attempts(&app, job.id).await.is_empty());
    assert_eq!(app.job_row(job.id).await.status, "queued");
}

#[tokio::test]
async fn the_ledger_cannot_be_rewritten() {
    let app = spawn_app().await;
    let job = app.job(JobType::ImageFast).await;
    hold(&app, &job, 1, None).await;
    for sql in [
        "UPDATE credit_ledger SET held_delta = 0",
        "DELETE FROM credit_ledger",
    ] {
        let err = sqlx::query(sql).execute(&app.db).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    let overdraw = sqlx::query("UPDATE credit_accounts SET held = balance + 1")
        .execute(&app.db)
        .await
        .unwrap_err();
    assert!(overdraw.to_string().contains("credit_accounts_covered"));
}

#[tokio::test]
async fn completions_of_many_tenants_sent_together_settle_every_hold_once() {
    let app = spawn_app().await;
    // Jobs of six tenants, two each, completed at once and in an order that interleaves
    // tenants and job ids: each batch must take its accounts after its job rows.
    let mut jobs = Vec::new();
    for _ in 0..12 {
        jobs.push(app.job(JobType::SdxlImageHigh).await);
    }
    for i in (0..jobs.len()).step_by(2) {
        let owner = jobs[i].user;
        sqlx::query("UPDATE jobs SET user_id = $1 WHERE id = $2")
            .bind(owner.as_uuid())
            .bind(jobs[i + 1].id.as_uuid())
            .execute(&app.db)
            .await
            .unwrap();
        jobs[i + 1].user = owner;
    }
    for job in &jobs {
        hold(&app, job, 6, None).await;
    }
    let mut bodies = Vec::new();
    for job in jobs.iter().rev() {
        let name = format!("{}.png", job.id);
        let body = json!({"jobId": job.id, "status": "completed",
                          "outputs": [{"path": job.key(&name)}]});
        bodies.push(app.as_holder(&body).await);
    }
    let answers = futures_util::future::join_all(bodies.iter().map(|b| app.post_exact(b))).await;
    for res in answers {
        assert_eq!(res.status(), 200);
    }
    for job in &jobs {
        assert_eq!(entries(&app, job.id).await, ["hold", "settle"]);
        assert_eq!(account(&app, job).await, (GRANT - 12, 0));
    }
    assert!(violations(&app).await.is_empty());
}
