//! Completions that arrive together share a transaction (`gpuq_complete_jobs`); each is
//! still answered for itself.

use futures_util::future::join_all;
use gpuq_schemas::JobType;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp, TestJob};

fn done(job: &TestJob, names: &[&str]) -> Value {
    let outputs: Vec<_> = names.iter().map(|n| json!({"path": job.key(n)})).collect();
    json!({"jobId": job.id, "status": "completed", "attempt": 1, "outputs": outputs})
}

/// `n` jobs of one user (so that a bare file name is inside each job's folder).
async fn jobs_of_one_user(app: &TestApp, n: usize) -> Vec<TestJob> {
    let mut jobs: Vec<TestJob> = Vec::new();
    for _ in 0..n {
        let mut job = app.job(JobType::SdxlImageFast).await;
        if let Some(first) = jobs.first() {
            sqlx::query("UPDATE jobs SET user_id = $1 WHERE id = $2")
                .bind(first.user.as_uuid())
                .bind(job.id.as_uuid())
                .execute(&app.db)
                .await
                .unwrap();
            job.user = first.user;
        }
        jobs.push(job);
    }
    jobs
}

#[tokio::test]
async fn completions_sent_together_all_complete_and_a_taken_path_refuses_only_its_own() {
    let app = spawn_app().await;
    let jobs = jobs_of_one_user(&app, 25).await;
    let (owner, rest) = jobs.split_first().unwrap();
    let res = app.post_callback(&done(owner, &["shared.png"])).await;
    assert_eq!(res.status(), 200);
    // Signed first, then sent at once, so that they meet in the writer.
    let mut bodies = Vec::new();
    for (i, job) in rest.iter().enumerate() {
        let own = format!("own-{i}.png");
        let names: Vec<&str> = if i == 11 {
            vec![own.as_str(), "shared.png"]
        } else {
            vec![own.as_str()]
        };
        bodies.push(app.as_holder(&done(job, &names)).await);
    }
    let answers = join_all(bodies.iter().map(|b| app.post_exact(b))).await;
    for (i, (job, res)) in rest.iter().zip(answers).enumerate() {
        let status = res.status();
        let body = json(res).await;
        let row = app.job_row(job.id).await;
        if i == 11 {
            assert_eq!(status, 409, "{body}");
            assert_eq!(body["error"]["code"], "storage_path_in_use");
            assert_ne!(row.status, "completed");
            assert!(app.images(job.id).await.is_empty());
        } else {
            assert_eq!(status, 200, "completion {i}: {body}");
            assert_eq!(body["status"], "completed", "completion {i}: {body}");
            assert_eq!(row.status, "completed");
            assert_eq!(app.images(job.id).await.len(), 1);
        }
    }
}

#[tokio::test]
async fn copies_of_one_completion_sent_together_complete_the_job_once() {
    let app = spawn_app().await;
    let job = app.job(JobType::SdxlImageFast).await;
    let mut bodies = Vec::new();
    for seed in 0..6 {
        // A seed each, so that no two are the same signed request (a replay).
        let mut body = done(&job, &["0.png"]);
        body["outputs"][0]["seed"] = json!(seed);
        bodies.push(app.as_holder(&body).await);
    }
    let answers = join_all(bodies.iter().map(|b| app.post_exact(b))).await;
    let mut applied = 0;
    for res in answers {
        assert_eq!(res.status(), 200);
        let body = json(res).await;
        assert_eq!(body["status"], "completed", "{body}");
        if body["ignored"] != json!(true) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one copy completes the job");
    assert_eq!(app.images(job.id).await.len(), 1);
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_attempts WHERE job_id = $1 AND outcome = 'completed'",
    )
    .bind(job.id.as_uuid())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn processing_reports_sent_together_each_start_their_own_job_once() {
    let app = spawn_app().await;
    let jobs = jobs_of_one_user(&app, 12).await;
    let mut bodies = Vec::new();
    for job in &jobs {
        // Two reports of each start (a retry), each signed on its own.
        for gpu in ["L4", "L40S"] {
            let body = json!({"jobId": job.id, "status": "processing", "gpu": gpu});
            bodies.push(app.as_holder(&body).await);
        }
    }
    let answers = join_all(bodies.iter().map(|b| app.post_exact(b))).await;
    for res in answers {
        assert_eq!(res.status(), 200);
        assert_eq!(json(res).await["status"], "processing");
    }
    for job in &jobs {
        assert_eq!(app.job_row(job.id).await.status, "processing");
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_attempts WHERE job_id = $1 AND finished_at IS NULL",
        )
        .bind(job.id.as_uuid())
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(open, 1, "one open attempt per started job");
    }
}

#[tokio::test]
async fn a_completion_waiting_for_a_locked_row_holds_up_only_itself() {
    let app = spawn_app().await;
    let jobs = jobs_of_one_user(&app, 16).await;
    let (stuck, rest) = jobs.split_first().unwrap();
    // Another transaction holds the first job's row (as a failure report does across its
    // Redis call).
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(stuck.id.as_uuid())
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        bodies.push(app.as_holder(&done(job, &[&format!("{i}.png")])).await);
    }
    let posts = join_all(bodies.iter().map(|b| app.post_exact(b)));
    // The others complete while the row stays locked; then the lock goes.
    let others = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mut done = 0;
            for job in rest {
                if app.job_row(job.id).await.status == "completed" {
                    done += 1;
                }
            }
            if done == rest.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{done} of {} completed while one row was locked",
                rest.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_ne!(app.job_row(stuck.id).await.status, "completed");
        holder.rollback().await.unwrap();
    };
    let (answers, ()) = tokio::join!(posts, others);
    for res in answers {
        assert_eq!(res.status(), 200);
    }
    assert_eq!(app.job_row(stuck.id).await.status, "completed");
}
