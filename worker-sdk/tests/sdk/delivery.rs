//! Reporting, acking, shutdown and Redis outages against the real Redis and a real HTTP
//! receiver.

use std::time::Duration;

use crate::helpers::*;
use gpuq_schemas::{CallbackStatus, JobEnvelope, JobType};
use gpuq_worker_sdk::{Asset, JobContext, JobError, Output};

async fn quick(job: JobEnvelope, ctx: JobContext) -> Result<Output, JobError> {
    ctx.progress(0.5, "halfway");
    Ok(Output::images(vec![
        Asset::new(ctx.output_key(0, "png")).seed(job.config.seed.unwrap_or(0))
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_503_twice_still_records_one_result_and_the_job_is_acked() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start_with(2, false).await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    let done = receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(10))
        .await;
    assert_eq!(receiver.answered_503(), 2);
    assert!(done.outputs[0].path.ends_with(&format!("/{id}/0.png")));
    for _ in 0..50 {
        if !in_redis(&q, id).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!in_redis(&q, id).await, "acked after the 200");
    assert_eq!(receiver.count(id, CallbackStatus::Completed), 1);
    assert_eq!(receiver.count(id, CallbackStatus::Processing), 1);
    assert_eq!(receiver.bad_signatures(), 0);
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_report_processing_after_a_short_job_reports_its_result_only_and_a_long_one_both() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    // A high-quality image runs 600 ms here, past the 200 ms; a fast one ends at once.
    let handler = |job: JobEnvelope, ctx: JobContext| async move {
        if job.job_type == JobType::SdxlImageHigh {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        Ok::<_, JobError>(Output::images(vec![Asset::new(ctx.output_key(0, "png"))]))
    };
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .report_processing_after(Duration::from_millis(200))
        .handler(handler)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let short = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    let long = enqueue(&q, &envelope(JobType::SdxlImageHigh)).await;
    for id in [short, long] {
        receiver
            .wait_for(id, CallbackStatus::Completed, Duration::from_secs(10))
            .await;
        until("acked", async || !in_redis(&q, id).await).await;
    }
    let statuses =
        |id| -> Vec<CallbackStatus> { receiver.payloads(id).iter().map(|p| p.status).collect() };
    assert_eq!(statuses(short), [CallbackStatus::Completed]);
    assert_eq!(
        statuses(long),
        [CallbackStatus::Processing, CallbackStatus::Completed]
    );
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_is_dead_lettered_not_acked() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start_with(0, true).await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = q.dead_jobs(10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(dead.len(), 1, "dead-lettered");
    assert_eq!(dead[0].id, id);
    assert!(
        dead[0].error.as_deref().unwrap().contains("422"),
        "{:?}",
        dead[0].error
    );
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_is_reported_then_failed_in_the_queue() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(|_job: JobEnvelope, _ctx: JobContext| async {
            Err::<Output, _>(JobError::permanent("prompt refused"))
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    let failed = receiver
        .wait_for(id, CallbackStatus::Failed, Duration::from_secs(5))
        .await;
    let err = failed.error.unwrap();
    assert_eq!(
        (err.message.as_str(), err.retryable),
        ("prompt refused", false)
    );
    for _ in 0..50 {
        if q.dead_jobs(10).await.unwrap().iter().any(|d| d.id == id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(q.dead_jobs(10).await.unwrap().iter().any(|d| d.id == id));
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_job_hands_it_back_and_another_worker_finishes_it() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "wan_queue").await;
    let receiver = Receiver::start().await;
    let slow = builder(&redis_url(), &ns, "wan_queue", &receiver)
        .shutdown_deadline(Duration::from_millis(300))
        .lease(Duration::from_secs(30))
        .heartbeat_every(Duration::from_secs(10))
        .handler(|_job: JobEnvelope, _ctx: JobContext| async {
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(2)))
                .await
                .ok();
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, JobError>(Output::images(vec![]))
        })
        .build()
        .unwrap();
    let slow_name = slow.consumer().to_string();
    let (stop, run) = spawn(slow);
    let id = enqueue(&q, &envelope(JobType::ImageFast)).await;
    let started = receiver
        .wait_for(id, CallbackStatus::Processing, Duration::from_secs(5))
        .await;
    assert_eq!(started.worker_id.as_deref(), Some(slow_name.as_str()));
    let t0 = std::time::Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .expect("stopped soon after the deadline")
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.waiting(), stats.in_flight),
        (1, 0),
        "handed back at once, not left to the 30 s lease"
    );

    let second = builder(&redis_url(), &ns, "wan_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let second_name = second.consumer().to_string();
    let (stop2, run2) = spawn(second);
    let done = receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(5))
        .await;
    assert_eq!(done.worker_id.as_deref(), Some(second_name.as_str()));
    assert_eq!(done.attempt, Some(1), "a released attempt does not count");
    stop2.cancel();
    run2.await.unwrap();
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_redis(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    for _ in 0..100 {
        if client.get_multiplexed_async_connection().await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_redis_works_once_redis_is_up_and_again_after_a_restart() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let ns = namespace();
    let receiver = Receiver::start().await;
    let worker = builder(&url, &ns, "sdxl_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !run.is_finished(),
        "a worker does not exit while Redis is down"
    );

    let mut redis = start_redis(port).await;
    let q = open_queue(&url, &ns, "sdxl_queue").await;
    let first = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    receiver
        .wait_for(first, CallbackStatus::Completed, Duration::from_secs(10))
        .await;

    // Restart: every key and every loaded script is gone.
    redis.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _redis = start_redis(port).await;
    let q = open_queue(&url, &ns, "sdxl_queue").await;
    let second = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    receiver
        .wait_for(second, CallbackStatus::Completed, Duration::from_secs(10))
        .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_worker_runs_nothing_until_it_is_released_then_takes_the_job() {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .handler(quick)
        .build()
        .unwrap();
    let name = worker.consumer().clone();
    q.quarantine(&name, "its last 5 attempts failed")
        .await
        .unwrap();
    let (stop, run) = spawn(worker);
    let id = enqueue(&q, &envelope(JobType::SdxlImageFast)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.count(id, CallbackStatus::Processing),
        0,
        "not claimed"
    );
    assert_eq!(q.stats().await.unwrap().waiting(), 1);
    assert!(q.release_quarantine(&name).await.unwrap());
    receiver
        .wait_for(id, CallbackStatus::Completed, Duration::from_secs(10))
        .await;
    stop.cancel();
    run.await.unwrap();
}
