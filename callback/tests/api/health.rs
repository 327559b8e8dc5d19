//! Worker health (ADR 0019): a worker whose retryable failures span different jobs is
//! quarantined with its evidence and refused at its next claim; a job that fails on
//! several different workers is dead-lettered at once as poison.

use gpuq_callback::HealthSettings;
use gpuq_queue::{ConsumerName, QueueError};
use gpuq_schemas::{JobId, JobType};
use serde_json::json;

use crate::helpers::{json, spawn_app_with, TestApp, TestJob};

const TYPE: JobType = JobType::SdxlImageFast;

fn failure(id: JobId, worker: &ConsumerName, message: &str, retryable: bool) -> serde_json::Value {
    json!({"jobId": id, "status": "failed", "workerId": worker.as_str(),
           "error": {"message": message, "retryable": retryable}})
}

async fn app(health: HealthSettings) -> TestApp {
    spawn_app_with(|s| s.health = health).await
}

async fn quarantines(app: &TestApp, worker: &ConsumerName) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT reason, evidence FROM worker_quarantine WHERE consumer = $1 AND released_at IS NULL",
    )
    .bind(worker.as_str())
    .fetch_all(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_worker_whose_retryable_failures_span_different_jobs_is_quarantined_with_its_evidence_and_refused_at_its_next_claim(
) {
    let app = app(HealthSettings {
        quarantine_after: 3,
        quarantine_min_jobs: 2,
        poison_after: 0,
    })
    .await;
    let sick = ConsumerName::unique("sick-gpu");
    let mut jobs: Vec<TestJob> = Vec::new();
    for _ in 0..4 {
        jobs.push(app.job_with(TYPE, 3, false).await);
    }
    app.claim(TYPE, &sick, jobs[0].id).await;
    let post = |i: usize, message: &'static str, retryable: bool| {
        let body = failure(jobs[i].id, &sick, message, retryable);
        let app = &app;
        async move {
            let res = app.post_callback(&body).await;
            assert_eq!(res.status(), 200);
            json(res).await
        }
    };
    // A permanent failure is the input's fault: it judges nothing.
    post(0, "prompt refused", false).await;
    post(1, "CUDA error: an illegal memory access", true).await;
    post(2, "CUDA error: an illegal memory access", true).await;
    assert!(
        quarantines(&app, &sick).await.is_empty(),
        "two failures are not three"
    );
    // Job 1's retry completes on a healthy GPU, which clears the job's error: the evidence
    // still shows what the sick worker's own attempt said.
    let healthy = ConsumerName::unique("healthy-gpu");
    app.redeliver(&jobs[1], &healthy).await;
    let done = json!({"jobId": jobs[1].id, "status": "completed", "workerId": healthy.as_str(),
                      "outputs": [{"path": jobs[1].key("a.png")}]});
    assert_eq!(
        json(app.post_callback(&done).await).await["status"],
        "completed"
    );

    post(3, "CUDA error: an illegal memory access", true).await;
    let rows = quarantines(&app, &sick).await;
    assert_eq!(rows.len(), 1, "quarantined once");
    let (reason, evidence) = &rows[0];
    assert!(
        reason.contains("last 3 attempts failed, on 3 different jobs"),
        "{reason}"
    );
    let evidence = evidence.as_array().unwrap();
    assert_eq!(evidence.len(), 3);
    assert!(evidence
        .iter()
        .all(|e| e["error"] == "CUDA error: an illegal memory access"));
    let ids: Vec<_> = evidence
        .iter()
        .map(|e| e["jobId"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !ids.contains(&jobs[0].id.to_string()),
        "the permanent failure is no evidence"
    );

    let queue = app.queue(TYPE);
    assert_eq!(queue.quarantined().await.unwrap()[0].0, sick.as_str());
    match queue.claim(&sick, 10).await {
        Err(QueueError::Quarantined(told)) => assert_eq!(&told, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Its jobs went back to the queue and another worker takes them.
    app.redeliver(&jobs[3], &healthy).await;
}

#[tokio::test]
async fn a_job_that_fails_on_two_different_workers_is_dead_lettered_at_once_as_poison() {
    let app = app(HealthSettings {
        quarantine_after: 0,
        quarantine_min_jobs: 1,
        poison_after: 2,
    })
    .await;
    let job = app.job_with(TYPE, 5, false).await;
    let (a, b) = (ConsumerName::unique("gpu-a"), ConsumerName::unique("gpu-b"));
    app.claim(TYPE, &a, job.id).await;
    let res = app
        .post_callback(&failure(job.id, &a, "out of memory", true))
        .await;
    assert_eq!(json(res).await["status"], "queued");
    // The same worker failing again is one worker, not two.
    app.redeliver(&job, &a).await;
    let res = app
        .post_callback(&failure(job.id, &a, "out of memory", true))
        .await;
    assert_eq!(json(res).await["status"], "queued");

    app.redeliver(&job, &b).await;
    let res = app
        .post_callback(&failure(job.id, &b, "out of memory", true))
        .await;
    assert_eq!(
        json(res).await["status"],
        "failed",
        "dead with attempts left"
    );
    let row = app.job_row(job.id).await;
    assert_eq!(row.error_code.as_deref(), Some("poison_job"));
    assert_eq!(row.attempts, 3);
    let message = row.error_message.unwrap();
    assert!(
        message.starts_with("poison_job: failed on 2 different workers"),
        "{message}"
    );
    assert!(message.ends_with("out of memory"), "{message}");
    let queue = app.queue(TYPE);
    assert!(
        app.in_set(queue.keys().dead(), job.id).await,
        "in the dead set"
    );
    let last = app.events(job.id).await.pop().unwrap();
    assert_eq!(last.code.as_deref(), Some("poison_job"));
}

#[tokio::test]
async fn a_poison_verdict_that_meets_the_owners_cancel_ends_the_job_cancelled_with_the_workers_words(
) {
    let app = app(HealthSettings {
        quarantine_after: 0,
        quarantine_min_jobs: 1,
        poison_after: 2,
    })
    .await;
    let job = app.job_with(TYPE, 5, false).await;
    let (a, b) = (ConsumerName::unique("gpu-a"), ConsumerName::unique("gpu-b"));
    app.claim(TYPE, &a, job.id).await;
    app.post_callback(&failure(job.id, &a, "out of memory", true))
        .await;
    app.redeliver(&job, &b).await;
    // The owner cancels while b runs it; b's failure would have made it poison.
    app.queue(TYPE).cancel(job.id).await.unwrap();
    let res = app
        .post_callback(&failure(job.id, &b, "CUDA error", true))
        .await;
    assert_eq!(json(res).await["status"], "cancelled");
    let row = app.job_row(job.id).await;
    assert_eq!(
        (
            row.status.as_str(),
            row.error_code,
            row.error_message.as_deref()
        ),
        ("cancelled", None, Some("CUDA error"))
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("gpuq_poison_jobs_total{"), "{metrics}");
}
