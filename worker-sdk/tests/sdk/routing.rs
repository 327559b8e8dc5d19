//! Model routing through the SDK (ADR 0020): what a handler says it loaded reaches the
//! worker's next claims, which then take the jobs of that model first and none that needs
//! more GPU memory than the worker has; the worker advertises it all in its profile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;
use gpuq_schemas::{CallbackStatus, JobEnvelope, JobId, JobType};
use gpuq_worker_sdk::{Asset, JobContext, JobError, Output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_the_jobs_of_the_model_its_handler_loaded_first_none_too_big_and_advertises_its_loads(
) {
    let ns = namespace();
    let q = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let receiver = Receiver::start().await;
    let mut ids: Vec<(JobId, &str)> = Vec::new();
    // Queued before the worker starts by one user (one tenant: its jobs are in this order
    // in the fair share), oldest first: y, x, y, x.
    let user = envelope(JobType::SdxlImageFast).user_id;
    for model in ["y", "x", "y", "x"] {
        let mut env = envelope(JobType::SdxlImageFast);
        env.user_id = user;
        env.model = Some(model.into());
        ids.push((enqueue(&q, &env).await, model));
    }
    let mut too_big = envelope(JobType::SdxlImageHigh);
    too_big.vram_gb = Some(24);
    enqueue(&q, &too_big).await;
    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .model_wait(Duration::from_secs(60))
        .vram_gb(16)
        .gpu_name("NVIDIA L4")
        .handler(move |job: JobEnvelope, ctx: JobContext| {
            let seen = Arc::clone(&seen);
            async move {
                ctx.loaded(job.model_key());
                seen.lock().unwrap().push(job.model_key().to_owned());
                Ok::<_, JobError>(Output::images(vec![Asset::new(ctx.output_key(0, "png"))]))
            }
        })
        .build()
        .unwrap();
    let consumer = worker.consumer().clone();
    let (stop, run) = spawn(worker);
    for (id, _) in &ids {
        receiver
            .wait_for(*id, CallbackStatus::Completed, Duration::from_secs(10))
            .await;
    }
    // Past a few heartbeat periods: the profile is renewed with each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let profile = q.profiles(&[consumer.as_str()]).await.unwrap()[0]
        .clone()
        .expect("the worker advertises itself");
    assert_eq!(
        (profile.gpu.as_deref(), profile.vram_gb, profile.loads),
        (Some("NVIDIA L4"), Some(16), 2)
    );
    assert_eq!(profile.loaded, ["x", "y"], "the last loaded first");
    assert_eq!(q.stats().await.unwrap().waiting(), 1, "24 GiB do not fit");
    stop.cancel();
    run.await.unwrap();
    assert_eq!(
        q.profiles(&[consumer.as_str()]).await.unwrap(),
        [None],
        "a worker that stopped withdraws its profile"
    );
    assert_eq!(
        *ran.lock().unwrap(),
        ["y", "y", "x", "x"],
        "one switch, not three"
    );
}
