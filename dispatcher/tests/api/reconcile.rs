use std::time::Duration;

use uuid::Uuid;

use gpuq_queue::ConsumerName;
use gpuq_schemas::JobId;

use crate::helpers::*;

#[tokio::test]
async fn jobs_redis_lost_are_enqueued_again_once_and_finished_ones_are_removed() {
    // Two replicas reconciling the same data every 100 ms.
    let first = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
    })
    .await;
    let _second = spawn_with_settings(first.settings.clone()).await;
    let token = token_for(Uuid::new_v4());
    let lost = first.enqueued(&token, "sdxl_image_fast").await;
    let finished = first.enqueued(&token, "sdxl_image_fast").await;
    let dead = first.enqueued(&token, "sdxl_image_fast").await;
    let q = first.queue("sdxl_queue").await;

    // A dead-lettered job with its row failed belongs in the dead set: left alone.
    let w = ConsumerName::unique("gpu");
    let claimed: Vec<JobId> = q
        .claim(&w, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    for id in &claimed {
        if *id == dead {
            q.fail(
                *id,
                Some(&w),
                &gpuq_queue::Failure {
                    retryable: false,
                    message: "bad".into(),
                },
            )
            .await
            .unwrap();
        } else {
            q.release(*id, &w).await.unwrap();
        }
    }
    sqlx::query("UPDATE jobs SET status = 'failed', completed_at = now() WHERE id = $1")
        .bind(dead.as_uuid())
        .execute(&first.db)
        .await
        .unwrap();

    // Redis forgets one job (as after a restart without persistence) and keeps one whose
    // row is already finished.
    q.cancel(lost).await.unwrap();
    sqlx::query("UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = $1")
        .bind(finished.as_uuid())
        .execute(&first.db)
        .await
        .unwrap();

    let mut restored = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let known = q.known(&[lost, finished]).await.unwrap();
        if known == [true, false] {
            restored = true;
            break;
        }
    }
    assert!(restored, "lost job restored and finished job removed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claimed = q.claim(&ConsumerName::unique("w"), 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![lost],
        "restored exactly once"
    );
    assert_eq!(
        claimed[0].envelope().unwrap().prompt,
        "p",
        "the envelope as enqueued"
    );
    assert_eq!(first.status_of(&lost.to_string()).await, "queued");
    assert_eq!(
        q.dead_jobs(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![dead],
        "the dead job stays for admins"
    );
}

#[tokio::test]
async fn a_redis_that_lost_more_than_a_page_of_jobs_gets_all_of_them_back() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let first = app.enqueued(&token, "sdxl_image_fast").await;
    let q = app.queue("sdxl_queue").await;
    // Rows for 1,200 unfinished jobs Redis never heard of (more than two reconciler pages):
    // copies of a real job's row and envelope under new ids.
    sqlx::query(
        "INSERT INTO jobs (id, user_id, job_type, queue, status, prompt, max_attempts, envelope, created_at) \
         SELECT n.id, user_id, job_type, queue, 'queued', prompt, max_attempts, \
                jsonb_set(envelope, '{job_id}', to_jsonb(n.id::text)), created_at + n.i * interval '1 ms' \
         FROM jobs, LATERAL (SELECT gen_random_uuid() AS id, i FROM generate_series(1, 1200) i) n \
         WHERE jobs.id = $1",
    )
    .bind(first.as_uuid())
    .execute(&app.db)
    .await
    .unwrap();

    let mut waiting = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting = q.stats().await.unwrap().waiting();
        if waiting == 1201 {
            break;
        }
    }
    assert_eq!(waiting, 1201, "every lost job is back, each once");
}

#[tokio::test]
async fn a_restored_job_keeps_its_attempts_and_one_lost_on_its_last_attempt_fails() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let second_try = app.enqueued(&token, "sdxl_image_fast").await;
    let last_try = app.enqueued(&token, "sdxl_image_fast").await;
    let q = app.queue("sdxl_queue").await;
    // Both were running (the callback service recorded their attempts) when Redis lost
    // everything about them.
    q.claim(&ConsumerName::unique("gpu"), 2).await.unwrap();
    for (id, attempts) in [(second_try, 1), (last_try, 3)] {
        sqlx::query("UPDATE jobs SET status = 'processing', attempts = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(attempts)
            .execute(&app.db)
            .await
            .unwrap();
        q.ack(id, None).await.unwrap();
    }
    let mut failed = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        failed = app.status_of(&last_try.to_string()).await;
        if failed == "failed" && q.known(&[second_try]).await.unwrap() == [true] {
            break;
        }
    }
    assert_eq!(failed, "failed", "sdxl allows 3 attempts; all were used");
    let claimed = q.claim(&ConsumerName::unique("gpu"), 10).await.unwrap();
    let attempts: Vec<_> = claimed.iter().map(|j| (j.id, j.attempt)).collect();
    assert_eq!(attempts, vec![(second_try, 2)], "counting goes on from 1");
    let err: Option<String> = sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = $1")
        .bind(last_try.as_uuid())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        err.as_deref(),
        Some("lost by the queue during its last attempt")
    );
}

#[tokio::test]
async fn a_job_dead_in_redis_whose_row_is_not_finished_becomes_failed_with_the_queues_reason() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let id = app.enqueued(&token, "sdxl_image_fast").await;
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("gpu");
    q.claim(&w, 1).await.unwrap();
    // A worker dead-letters the job itself (as docs/protocol.md lets a worker whose callback
    // service is unreachable do), with a NUL in its reason; PostgreSQL never heard of it.
    let failure = gpuq_queue::Failure {
        retryable: false,
        message: "cuda\u{0} error".into(),
    };
    q.fail(id, Some(&w), &failure).await.unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = app.status_of(&id.to_string()).await;
        if status == "failed" {
            break;
        }
    }
    assert_eq!(status, "failed", "within a few reconcile periods");
    let err: Option<String> = sqlx::query_scalar("SELECT error_message FROM jobs WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(err.as_deref(), Some("cuda\u{fffd} error"));
    // It stays in the dead set, where admins requeue or discard it.
    assert_eq!(q.dead_jobs(10).await.unwrap()[0].id, id);
}

#[tokio::test]
async fn a_processing_row_nobody_runs_goes_back_to_queued_and_a_running_one_stays() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let idle = app.enqueued(&token, "sdxl_image_fast").await;
    let running = app.enqueued(&token, "sdxl_image_fast").await;
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("gpu");
    assert_eq!(q.claim(&w, 2).await.unwrap().len(), 2);
    sqlx::query("UPDATE jobs SET status = 'processing' WHERE id = ANY($1)")
        .bind([idle.as_uuid(), running.as_uuid()])
        .execute(&app.db)
        .await
        .unwrap();
    // The callback service failed `idle` in Redis (retry scheduled) but died before its
    // commit: the row still says processing.
    let failure = gpuq_queue::Failure {
        retryable: true,
        message: "oom".into(),
    };
    q.fail(idle, Some(&w), &failure).await.unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The running job's worker is alive: its lease (400 ms here) is renewed.
        q.heartbeat(running, &w).await.unwrap();
        status = app.status_of(&idle.to_string()).await;
        if status == "queued" {
            break;
        }
    }
    assert_eq!(status, "queued");
    assert_eq!(app.status_of(&running.to_string()).await, "processing");
}

#[tokio::test]
async fn a_cancelled_running_job_stays_in_redis_until_its_holder_hears_of_it() {
    let app = spawn_app_with(|s| {
        s.queue.reconcile_interval_ms = 100;
        s.queue.reconcile_grace_ms = 0;
        s.queue.lease_ms = 30_000;
    })
    .await;
    let owner = Uuid::new_v4();
    let running = app.enqueued(&token_for(owner), "sdxl_image_fast").await;
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("gpu");
    assert_eq!(q.claim(&w, 1).await.unwrap().len(), 1);
    let answer = app
        .cancel_job(&token_for(owner), &running.to_string())
        .await;
    assert_eq!(answer.status(), 200);
    // Several reconcile passes (every 100 ms) see a cancelled row whose job Redis holds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        q.heartbeat(running, &w).await.unwrap(),
        gpuq_queue::LeaseStatus::Cancelled,
        "the worker must learn of the cancel, not find its job gone"
    );
}
