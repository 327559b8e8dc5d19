//! The provider worker against a local server implementing Replicate's documented API
//! (`fake_replicate.rs`), on the real Redis, reporting to the signature-checking receiver.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fake_replicate::{output_png, FakeReplicate, TOKEN};
use crate::helpers::*;
use gpuq_queue::CancelOutcome;
use gpuq_schemas::{CallbackStatus, JobEnvelope, JobType};
use gpuq_worker_sdk::provider::{
    ModelRef, PollInterval, ProviderHandler, ProviderModel, ReplicateClient,
};
use gpuq_worker_sdk::{LocalStorage, Worker};
use serde_json::json;

fn handler(fake: &FakeReplicate, token: &str) -> ProviderHandler {
    let mut models = BTreeMap::new();
    models.insert(
        JobType::SdxlImageFast,
        ProviderModel {
            model: ModelRef::parse("stability-ai/sdxl:39ed52f2").unwrap(),
            // A fixed input, and one the model does not take removed.
            input: json!({"refine": "no_refiner", "guidance_scale": null})
                .as_object()
                .unwrap()
                .clone(),
        },
    );
    models.insert(
        JobType::VideoFast,
        ProviderModel {
            model: ModelRef::parse("wan-video/wan-2.1-t2v-480p").unwrap(),
            input: Default::default(),
        },
    );
    ProviderHandler {
        client: ReplicateClient::new(
            &fake.base_url,
            token.to_string().into(),
            Duration::from_secs(5),
        )
        .unwrap(),
        models,
        poll: PollInterval {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        max_output_bytes: 1 << 20,
        max_throttled: Duration::from_secs(30),
        max_prediction: Duration::from_secs(30),
    }
}

struct Setup {
    ns: String,
    fake: FakeReplicate,
    receiver: Receiver,
    queue: gpuq_queue::Queue,
    dir: tempfile::TempDir,
    stop: gpuq_worker_sdk::CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

async fn setup(token: &str) -> Setup {
    let ns = namespace();
    let fake = FakeReplicate::start().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let worker: Worker = builder(&redis_url(), &ns, "sdxl_queue", &receiver)
        .concurrency(2)
        .shutdown_deadline(Duration::from_millis(300))
        .storage(LocalStorage::new(dir.path()))
        .handler(handler(&fake, token))
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let queue = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    Setup {
        ns,
        fake,
        receiver,
        queue,
        dir,
        stop,
        run,
    }
}

impl Setup {
    async fn submit(&self, job_type: JobType, prompt: &str, num_images: u32) -> JobEnvelope {
        let mut env = envelope(job_type);
        // One provider queue serves types of either GPU queue.
        env.queue = "sdxl_queue".into();
        env.prompt = prompt.into();
        env.config.num_images = num_images;
        enqueue(&self.queue, &env).await;
        env
    }

    /// Waits until `env`'s job runs at the provider (its prediction created).
    async fn running(&self, env: &JobEnvelope) {
        self.receiver
            .wait_for(
                env.job_id,
                CallbackStatus::Processing,
                Duration::from_secs(5),
            )
            .await;
        eventually(|| self.fake.predictions() == 1).await;
    }

    async fn stop(self) {
        self.stop.cancel();
        self.run.await.unwrap();
    }
}

/// Waits up to 3 s for `done`.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..150 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_that_succeeds_is_downloaded_into_storage_and_reported_signed() {
    let s = setup(TOKEN).await;
    let env = s.submit(JobType::SdxlImageFast, "ok", 2).await;
    let done = s
        .receiver
        .wait_for(
            env.job_id,
            CallbackStatus::Completed,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done.attempt, Some(1));
    assert_eq!(done.outputs.len(), 2);
    for (i, asset) in done.outputs.iter().enumerate() {
        let stored = std::fs::read(s.dir.path().join(&env.bucket).join(&asset.path)).unwrap();
        assert_eq!(
            stored,
            output_png("pred0000", i),
            "output {i} is the provider's file"
        );
        assert!(
            asset.path.ends_with(&format!("{}/{i}.png", env.job_id)),
            "{}",
            asset.path
        );
        assert_eq!(asset.metadata["prediction"], "pred0000");
        assert_eq!(asset.metadata["model"], "stability-ai/sdxl:39ed52f2");
    }
    // The request: the pinned version, the job's settings under the model's names, the
    // type's fixed input over them.
    let creates = s.fake.creates();
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["version"], "39ed52f2");
    let input = &creates[0]["input"];
    assert_eq!(input["prompt"], "ok");
    assert_eq!(input["num_outputs"], 2);
    assert_eq!(input["width"], env.config.width);
    assert_eq!(input["seed"], 42);
    assert_eq!(input["refine"], "no_refiner");
    assert!(input.get("guidance_scale").is_none(), "{input}");
    assert_eq!(s.receiver.bad_signatures(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_run_by_name_makes_one_video() {
    let s = setup(TOKEN).await;
    let env = s.submit(JobType::VideoFast, "ok", 1).await;
    let done = s
        .receiver
        .wait_for(
            env.job_id,
            CallbackStatus::Completed,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done.outputs.len(), 1);
    let creates = s.fake.creates();
    assert!(creates[0].get("version").is_none(), "{}", creates[0]);
    assert_eq!(creates[0]["input"]["num_frames"], env.config.frames);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prediction_and_a_refused_input_fail_the_job_for_good_with_the_reason() {
    let s = setup(TOKEN).await;
    let failed = s.submit(JobType::SdxlImageFast, "fail", 1).await;
    let invalid = s.submit(JobType::SdxlImageFast, "invalid", 1).await;
    for (env, reason) in [(&failed, "NSFW content detected"), (&invalid, "422")] {
        let report = s
            .receiver
            .wait_for(env.job_id, CallbackStatus::Failed, Duration::from_secs(10))
            .await;
        let error = report.error.unwrap();
        assert!(!error.retryable, "{error:?}");
        assert!(error.message.contains(reason), "{}", error.message);
    }
    assert_eq!(s.fake.creates().len(), 2, "no second attempt");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_create_waits_out_retry_after_without_spending_an_attempt() {
    let s = setup(TOKEN).await;
    let started = std::time::Instant::now();
    let env = s.submit(JobType::SdxlImageFast, "throttle", 1).await;
    let done = s
        .receiver
        .wait_for(
            env.job_id,
            CallbackStatus::Completed,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(s.fake.throttled(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was honoured"
    );
    assert_eq!(done.attempt, Some(1), "429s spent no attempt");
    assert_eq!(s.receiver.count(env.job_id, CallbackStatus::Failed), 0);
    assert_eq!(s.fake.predictions(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_running_past_the_lease_keeps_its_job() {
    let s = setup(TOKEN).await;
    let reaper = reap_in_thread(&s.ns, "sdxl_queue", Duration::from_secs(2));
    let env = s.submit(JobType::SdxlImageFast, "slow", 1).await;
    let done = s
        .receiver
        .wait_for(
            env.job_id,
            CallbackStatus::Completed,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done.attempt, Some(1));
    assert!(reaper.join().unwrap().is_empty(), "no lease expired");
    assert_eq!(s.fake.predictions(), 1, "one prediction for one job");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_job_cancels_its_prediction() {
    let s = setup(TOKEN).await;
    let env = s.submit(JobType::SdxlImageFast, "hang", 1).await;
    s.running(&env).await;
    assert_eq!(
        s.queue.cancel(env.job_id).await.unwrap(),
        CancelOutcome::Flagged
    );
    eventually(|| s.fake.canceled("pred0000")).await;
    assert!(
        s.fake.canceled("pred0000"),
        "the provider was told to cancel"
    );
    assert_eq!(s.receiver.count(env.job_id, CallbackStatus::Completed), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_retryable_and_kept_out_of_the_report() {
    let s = setup("r8_wrong").await;
    let env = s.submit(JobType::SdxlImageFast, "ok", 1).await;
    let report = s
        .receiver
        .wait_for(env.job_id, CallbackStatus::Failed, Duration::from_secs(10))
        .await;
    let error = report.error.unwrap();
    assert!(error.retryable, "{error:?}");
    assert!(error.message.contains("token"), "{}", error.message);
    assert!(
        !error.message.contains("r8_wrong"),
        "the token is not in the report"
    );
    assert!(s.fake.unauthorized() >= 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopping_mid_prediction_cancels_it_at_the_provider() {
    let s = setup(TOKEN).await;
    let env = s.submit(JobType::SdxlImageFast, "hang", 1).await;
    s.running(&env).await;
    let fake = s.fake.clone();
    // The worker stops; the prediction runs past its 300 ms shutdown deadline.
    s.stop().await;
    eventually(|| fake.canceled("pred0000")).await;
    assert!(fake.canceled("pred0000"), "the provider was told to cancel");
}
