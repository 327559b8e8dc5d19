//! Run limits: a handler past its type's limit is told to stop, then dropped, and its
//! attempt fails with `execution_timeout` (retried or dead-lettered like any failure).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use gpuq_schemas::callback::CallbackError;
use gpuq_schemas::{CallbackStatus, FailureCode, JobType};
use gpuq_worker_sdk::{JobContext, JobError, Output};

const LIMIT: Duration = Duration::from_millis(300);
/// The helpers' builder's grace.
const GRACE: Duration = Duration::from_millis(300);

/// Runs one `sdxl_image_fast` job of one image and one attempt under `LIMIT`, and returns
/// the failure it reported, how long after the enqueue, and its error in the dead set.
async fn run_past_the_limit<F, Fut>(handler: F) -> (CallbackError, Duration, String)
where
    F: Fn(gpuq_schemas::JobEnvelope, JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Output, JobError>> + Send + 'static,
{
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .run_limit(JobType::SdxlImageFast, LIMIT)
        .handler(handler)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let mut env = envelope(JobType::SdxlImageFast);
    env.config.num_images = 1;
    env.max_attempts = 1;
    let t0 = Instant::now();
    let id = enqueue(&q, &env).await;
    let failed = receiver
        .wait_for(id, CallbackStatus::Failed, Duration::from_secs(10))
        .await;
    let took = t0.elapsed();
    assert_eq!(failed.attempt, Some(1));
    let mut dead = None;
    until("its only attempt failed: dead-lettered", async || {
        dead = q
            .dead_jobs(10)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == id);
        dead.is_some()
    })
    .await;
    stop.cancel();
    run.await.unwrap();
    let dead = dead.expect("found above");
    (failed.error.unwrap(), took, dead.error.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_its_run_limit_is_dropped_after_the_grace_and_its_attempt_fails_with_execution_timeout(
) {
    let told = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&told);
    let (err, took, dead) = run_past_the_limit(move |_job, ctx: JobContext| {
        let seen = Arc::clone(&seen);
        async move {
            // Never returns by itself: only dropping its future stops it.
            loop {
                if ctx.is_cancelled() {
                    seen.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
    assert_eq!(err.code, Some(FailureCode::ExecutionTimeout));
    assert!(err.retryable, "a timeout may pass on another GPU");
    assert!(
        err.message.starts_with("execution_timeout:"),
        "{}",
        err.message
    );
    assert!(err.message.contains("was dropped"), "{}", err.message);
    assert!(told.load(Ordering::SeqCst), "the soft signal came first");
    assert!(
        took >= LIMIT + GRACE,
        "not before the limit and the grace: {took:?}"
    );
    assert!(took < LIMIT + GRACE + Duration::from_secs(3), "{took:?}");
    assert!(dead.contains("execution_timeout"), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_stops_when_told_ends_its_attempt_within_the_grace() {
    let (err, took, _) = run_past_the_limit(|_job, ctx: JobContext| async move {
        ctx.cancelled().await;
        Err::<Output, _>(JobError::retryable("stopped as asked"))
    })
    .await;
    assert_eq!(err.code, Some(FailureCode::ExecutionTimeout));
    assert!(err.message.contains("and returned"), "{}", err.message);
    assert!(took >= LIMIT, "{took:?}");
    assert!(took < LIMIT + GRACE + Duration::from_secs(3), "{took:?}");
}
