//! Lease renewal and cancellation against the real Redis.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use gpuq_queue::CancelOutcome;
use gpuq_schemas::{CallbackStatus, JobEnvelope, JobType};
use gpuq_worker_sdk::{Asset, JobContext, JobError, Output};

const SLEEP: Duration = Duration::from_millis(1500);

/// Runs one job whose handler takes [`SLEEP`] (several 400 ms leases) the way `how` says,
/// with a reaper running alongside, and checks the job was never redelivered.
async fn slow_job_keeps_its_lease(how: &'static str) {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let handler = move |job: JobEnvelope, ctx: JobContext| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            match how {
                "spawn_blocking" => tokio::task::spawn_blocking(|| std::thread::sleep(SLEEP))
                    .await
                    .unwrap(),
                "async" => tokio::time::sleep(SLEEP).await,
                // A handler that (wrongly) blocks its runtime thread outright.
                _ => std::thread::sleep(SLEEP),
            }
            assert_eq!(ctx.attempt(), 1);
            assert!(!ctx.is_cancelled());
            Ok::<_, JobError>(Output::images(vec![
                Asset::new(ctx.output_key(0, "png")).seed(job.config.seed.unwrap_or(0))
            ]))
        }
    };
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(handler)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let reaper = reap_in_thread(&ns, "sdxl_queue", SLEEP + Duration::from_millis(500));
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    let done = receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(10))
        .await;
    assert_eq!(done.attempt, Some(1));
    assert_eq!(done.outputs.len(), 1);
    assert!(
        reaper.join().unwrap().is_empty(),
        "the lease expired ({how})"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "delivered once ({how})");
    assert_eq!(receiver.count(id, CallbackStatus::Completed), 1);
    assert_eq!(receiver.bad_signatures(), 0);
    wait_gone(&q, id).await;
    stop.cancel();
    run.await.unwrap();
}

async fn wait_gone(q: &gpuq_queue::Queue, id: gpuq_schemas::JobId) {
    for _ in 0..100 {
        if !in_redis(q, id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} still in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_blocking_in_spawn_blocking_past_several_leases_keeps_its_job() {
    slow_job_keeps_its_lease("spawn_blocking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_sleeping_past_several_leases_keeps_its_job() {
    slow_job_keeps_its_lease("async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_handler_blocking_the_only_runtime_thread_still_keeps_its_job() {
    slow_job_keeps_its_lease("block_in_place_of_async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_jobs_context_fires_and_the_job_is_removed_without_a_result() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "wan_queue").await;
    let receiver = Receiver::start().await;
    let (fired_tx, fired_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let handler = move |_job: JobEnvelope, ctx: JobContext| {
        let fired = fired_tx.clone();
        async move {
            tokio::select! {
                _ = ctx.cancelled() => {
                    let _ = fired.send(ctx.attempt());
                    Err(JobError::retryable("stopped"))
                }
                _ = tokio::time::sleep(Duration::from_secs(30)) => Ok(Output::images(vec![])),
            }
        }
    };
    let worker = builder(&redis_url(), &ns, "wan_queue", &receiver)
        .handler(handler)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &envelope(JobType::ImageFast)).await;
    receiver
        .wait_for(id, CallbackStatus::Processing, Duration::from_secs(5))
        .await;
    assert_eq!(q.cancel(id).await.unwrap(), CancelOutcome::Flagged);
    let mut fired_rx = fired_rx;
    let attempt = tokio::time::timeout(Duration::from_secs(3), fired_rx.recv())
        .await
        .expect("ctx.cancelled() fired")
        .unwrap();
    assert_eq!(attempt, 1);
    wait_gone(&q, id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(id, CallbackStatus::Completed), 0);
    assert_eq!(
        receiver.count(id, CallbackStatus::Failed),
        0,
        "a cancelled job reports nothing"
    );
    stop.cancel();
    run.await.unwrap();
}
