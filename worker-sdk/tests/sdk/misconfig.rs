//! Misconfiguration is not failure: a worker whose reports the callback service refuses as
//! unauthenticated, or that cannot deliver a result, hands the job back (attempt not
//! spent) instead of dead-lettering work PostgreSQL never heard of.

use std::time::Duration;

use crate::helpers::*;
use gpuq_queue::Queue;
use gpuq_schemas::{CallbackStatus, JobEnvelope, JobId, JobType};
use gpuq_worker_sdk::{Asset, CancellationToken, JobContext, JobError, Output, WorkerError};

async fn quick(_job: JobEnvelope, ctx: JobContext) -> Result<Output, JobError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Output::images(vec![Asset::new(ctx.output_key(0, "png"))]))
}

/// Whether `id` waits in a lane: Redis holds it, and it is neither leased nor delayed nor
/// dead.
async fn waiting(q: &Queue, id: JobId) -> bool {
    let keys = q.keys();
    let target = gpuq_queue::RedisTarget::open(&redis_url()).unwrap();
    let mut conn = gpuq_queue::connect(&target).await.unwrap();
    let (held, leased, delayed, dead): (bool, Option<f64>, Option<f64>, Option<f64>) =
        redis::pipe()
            .cmd("HEXISTS")
            .arg(keys.jobs())
            .arg(id.to_string())
            .cmd("ZSCORE")
            .arg(keys.leases())
            .arg(id.to_string())
            .cmd("ZSCORE")
            .arg(keys.delayed())
            .arg(id.to_string())
            .cmd("ZSCORE")
            .arg(keys.dead())
            .arg(id.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
    held && leased.is_none() && delayed.is_none() && dead.is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_secret_is_refused_does_not_start_and_claims_nothing() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .callback_secret("a-rotated-away-secret".to_string().into())
        .handler(quick)
        .build()
        .unwrap();
    let err = worker.run(CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(err, WorkerError::CallbackRefused { status: 401, .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("check the callback URL and secret"));
    assert!(waiting(&q, id).await);
    assert_eq!(q.current_attempt(id).await.unwrap(), 0, "never claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_callback_url_reports_to_its_callback_route() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .callback_url(receiver.base_url())
        .handler(quick)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(10))
        .await;
    assert!(receiver.probes() >= 1, "checked at start-up");
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reports_hand_the_job_back_and_stop_claiming_until_a_probe_is_accepted() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let ready = worker.readiness();
    let (stop, run) = spawn(worker);
    until("the start-up probe", async || receiver.probes() >= 1).await;
    // The secret is rotated on the service before the worker learns the new one.
    receiver.refuse(true);
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    until("the job is handed back", async || {
        receiver.refused() >= 1 && waiting(&q, id).await
    })
    .await;
    assert!(!*ready.borrow(), "the worker says it is not ready");
    assert_eq!(
        q.current_attempt(id).await.unwrap(),
        0,
        "the attempt is not spent"
    );
    assert!(q.dead_jobs(10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(waiting(&q, id).await, "nothing is claimed while refused");

    receiver.refuse(false);
    receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(20))
        .await;
    assert!(*ready.borrow());
    let done = &receiver.payloads(id)[0];
    assert_eq!(done.attempt, Some(1));
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_undeliverable_within_the_retry_budget_is_handed_back_not_dead_lettered() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    // The first delivery's report and its ten retries all get 503.
    let receiver = Receiver::start_with(11, false).await;
    let mut env = envelope(JobType::SdxlImageFast);
    env.max_attempts = 1;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &env).await;
    let done = receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(20))
        .await;
    assert_eq!(receiver.answered_503(), 11);
    assert_eq!(
        receiver.count(id, CallbackStatus::Processing),
        2,
        "run twice"
    );
    assert_eq!(
        done.attempt,
        Some(1),
        "the undelivered attempt was not counted"
    );
    assert!(q.dead_jobs(10).await.unwrap().is_empty());
    stop.cancel();
    run.await.unwrap();
}
