//! Provider workers: serve a queue by forwarding each job to a hosted provider and storing
//! its outputs like any worker (ADR 0017). [`ProviderHandler`] runs a job as a Replicate
//! prediction ([`replicate`]): create it with the model configured for the job's type, poll
//! it with backoff, cancel it when the job is cancelled, download its output files into the
//! worker's storage. Claiming, the lease, the fenced and signed reports are the SDK's, as for
//! a GPU worker. [`ProviderConfig`] reads the `gpuq-provider-worker` binary's settings.
//!
//! Failures map to what the queue should do: a request the provider refuses (400, 404, 422)
//! and a prediction that ends `failed` are permanent; a refused token, a provider that is
//! down and a prediction canceled by the provider are retryable; a throttled request (429)
//! waits out `Retry-After` inside the attempt, so rate limits burn no attempts (the lease is
//! renewed all the while).

mod config;
pub mod replicate;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use gpuq_schemas::{JobEnvelope, JobKind, JobType};
use serde_json::{json, Map, Value};

pub use config::ProviderConfig;
pub use replicate::{ModelRef, Prediction, ProviderError, ReplicateClient};

use crate::{Asset, Handler, JobContext, JobError, Output};

/// What runs a job type at the provider.
#[derive(Debug, Clone)]
pub struct ProviderModel {
    /// The model (and version).
    pub model: ModelRef,
    /// Inputs set for every job of the type, over the ones taken from the job; a `null`
    /// removes one the model does not take.
    pub input: Map<String, Value>,
}

/// How often a running prediction is polled: from `first`, growing by half each time, at
/// most `max` apart.
#[derive(Debug, Clone, Copy)]
pub struct PollInterval {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

/// Consecutive failed polls after which the attempt is given up (retryable).
const MAX_POLL_ERRORS: u32 = 8;

/// Runs jobs as predictions of a hosted provider.
#[derive(Debug, Clone)]
pub struct ProviderHandler {
    /// The provider's API.
    pub client: ReplicateClient,
    /// The model of each job type this worker serves.
    pub models: BTreeMap<JobType, ProviderModel>,
    /// Polling of a running prediction.
    pub poll: PollInterval,
    /// The largest output file downloaded.
    pub max_output_bytes: u64,
    /// How long one attempt may wait out the provider's throttling before it gives up
    /// (retryable): a provider that never stops answering 429 must not hold a slot forever.
    pub max_throttled: Duration,
    /// How long a prediction may run before it is cancelled and the attempt fails
    /// (retryable).
    pub max_prediction: Duration,
}

impl Handler for ProviderHandler {
    async fn handle(&self, job: JobEnvelope, ctx: JobContext) -> Result<Output, JobError> {
        let Some(model) = self.models.get(&job.job_type) else {
            return Err(JobError::permanent(format!(
                "this provider worker has no model configured for {}",
                job.job_type
            )));
        };
        let input = input_for(&job, &model.input);
        let created = self
            .unthrottled(&ctx, || self.client.create(&model.model, &input))
            .await?;
        tracing::info!(job_id = %job.job_id, prediction = %created.id, model = %model.model,
            "prediction created");
        let running = Running::new(&self.client, &created.id);
        let done = self.until_done(&ctx, created).await?;
        running.ended();
        match done.status.as_str() {
            "succeeded" => self.store(&job, &ctx, &model.model, &done).await,
            "failed" => Err(JobError::permanent(format!(
                "the provider's prediction {} failed: {}",
                done.id,
                describe(&done.error)
            ))),
            other => Err(JobError::retryable(format!(
                "the provider ended prediction {} as {other}",
                done.id
            ))),
        }
    }
}

impl ProviderHandler {
    /// Runs `call` until the provider does not throttle it, waiting out each `Retry-After`
    /// (at most `max_throttled` in all). Stops (retryable) when the job is cancelled.
    async fn unthrottled<T, F, Fut>(&self, ctx: &JobContext, call: F) -> Result<T, JobError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut throttled = Duration::ZERO;
        loop {
            match call().await {
                Err(ProviderError::RateLimited(wait)) => {
                    throttled += wait;
                    if throttled > self.max_throttled {
                        return Err(JobError::retryable(format!(
                            "throttled by the provider for over {} s",
                            self.max_throttled.as_secs()
                        )));
                    }
                    tracing::warn!(job_id = %ctx.job_id(), ?wait, "throttled by the provider");
                    tokio::select! {
                        _ = ctx.cancelled() => return Err(JobError::retryable("cancelled")),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                other => return other.map_err(job_error),
            }
        }
    }

    /// Polls the prediction until it ends. Returning early (a cancelled job, a prediction
    /// past `max_prediction`, a provider that stopped answering) leaves the prediction to
    /// the caller's [`Running`], which cancels it.
    async fn until_done(
        &self,
        ctx: &JobContext,
        mut p: Prediction,
    ) -> Result<Prediction, JobError> {
        let started = tokio::time::Instant::now();
        let mut wait = self.poll.first;
        let mut errors = 0;
        let mut reported = String::new();
        while !p.is_terminal() {
            if p.status != reported {
                let (fraction, message) = match p.status.as_str() {
                    "processing" => (0.1, "running at the provider"),
                    _ => (0.05, "waiting at the provider"),
                };
                ctx.progress(fraction, message);
                reported.clone_from(&p.status);
            }
            if started.elapsed() > self.max_prediction {
                return Err(JobError::retryable(format!(
                    "the provider's prediction {} ran past {} s",
                    p.id,
                    self.max_prediction.as_secs()
                )));
            }
            tokio::select! {
                _ = ctx.cancelled() => return Err(JobError::retryable("cancelled")),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 3 / 2).min(self.poll.max);
            match self.client.get(&p.id).await {
                Ok(next) => {
                    p = next;
                    errors = 0;
                }
                Err(ProviderError::RateLimited(after)) => wait = wait.max(after),
                Err(e) => {
                    errors += 1;
                    tracing::warn!(job_id = %ctx.job_id(), prediction = %p.id, error = %e,
                        "could not poll the prediction");
                    if errors >= MAX_POLL_ERRORS {
                        return Err(job_error(e));
                    }
                }
            }
        }
        Ok(p)
    }

    /// Downloads the prediction's output files into the job's bucket.
    async fn store(
        &self,
        job: &JobEnvelope,
        ctx: &JobContext,
        model: &ModelRef,
        p: &Prediction,
    ) -> Result<Output, JobError> {
        let urls = p.output_urls();
        let wanted = match job.job_type.spec().kind {
            JobKind::Image => urls.len(),
            JobKind::Video => urls.len().min(1),
        };
        if wanted == 0 {
            return Err(JobError::permanent(format!(
                "the provider's prediction {} succeeded without an output file",
                p.id
            )));
        }
        ctx.progress(0.9, "downloading the outputs");
        let mut assets = Vec::with_capacity(wanted);
        for (i, url) in urls.iter().take(wanted).enumerate() {
            let (bytes, content_type) = self
                .unthrottled(ctx, || self.client.download(url, self.max_output_bytes))
                .await?;
            let (ext, content_type) = file_type(content_type.as_deref(), url);
            let path = ctx.upload(i, ext, bytes, content_type).await?;
            let mut asset = Asset::new(path).metadata(json!({
                "generator": "replicate",
                "model": model.to_string(),
                "prediction": p.id,
            }));
            if let Some(seed) = job.config.seed {
                asset = asset.seed(seed.wrapping_add(i as u64));
            }
            assets.push(asset);
        }
        Ok(match job.job_type.spec().kind {
            JobKind::Image => Output::images(assets),
            JobKind::Video => Output::video(assets.remove(0)),
        })
    }
}

/// A prediction the handler has not seen end. Dropped before [`Running::ended`] (the
/// handler returned early, or the SDK aborted it: a shutdown past its deadline, a lost
/// lease), it asks the provider to cancel the prediction, from a task of its own: nobody
/// waits for its result, and it should not run on and be billed.
struct Running {
    client: ReplicateClient,
    id: Option<String>,
}

impl Running {
    fn new(client: &ReplicateClient, id: &str) -> Self {
        Self {
            client: client.clone(),
            id: Some(id.to_owned()),
        }
    }

    fn ended(mut self) {
        self.id = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(async move {
            for _ in 0..3 {
                match client.cancel(&id).await {
                    Ok(_) => return,
                    Err(ProviderError::RateLimited(wait)) => {
                        tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                    }
                    Err(e) => {
                        tracing::warn!(prediction = %id, error = %e, "could not cancel the prediction");
                        return;
                    }
                }
            }
        });
    }
}

/// The prediction's input: the job's prompt and settings under the names image and video
/// models on Replicate commonly take, then the type's configured inputs over them.
pub fn input_for(job: &JobEnvelope, configured: &Map<String, Value>) -> Value {
    let c = &job.config;
    let mut m = Map::new();
    m.insert("prompt".into(), json!(job.prompt));
    if let Some(negative) = &job.negative_prompt {
        m.insert("negative_prompt".into(), json!(negative));
    }
    m.insert("width".into(), json!(c.width));
    m.insert("height".into(), json!(c.height));
    m.insert("num_inference_steps".into(), json!(c.steps));
    m.insert("guidance_scale".into(), json!(c.guidance));
    if let Some(seed) = c.seed {
        m.insert("seed".into(), json!(seed));
    }
    match job.job_type.spec().kind {
        JobKind::Image => m.insert("num_outputs".into(), json!(c.num_images.max(1))),
        JobKind::Video => m.insert("num_frames".into(), json!(c.frames)),
    };
    if let Some(image) = &c.reference_image {
        m.insert("image".into(), json!(image));
        if let Some(strength) = c.reference_strength {
            m.insert("prompt_strength".into(), json!(strength));
        }
    }
    for (k, v) in configured {
        if v.is_null() {
            m.remove(k);
        } else {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

fn job_error(e: ProviderError) -> JobError {
    match e {
        ProviderError::Refused { .. } => JobError::permanent(e.to_string()),
        _ => JobError::retryable(e.to_string()),
    }
}

fn describe(error: &Value) -> String {
    match error {
        Value::String(s) => s.chars().take(500).collect(),
        Value::Null => "no reason given".into(),
        other => other.to_string().chars().take(500).collect(),
    }
}

/// The stored file's extension and content type: from the answer's `Content-Type`, else
/// from the URL's path.
fn file_type(content_type: Option<&str>, url: &str) -> (&'static str, &'static str) {
    const TYPES: [(&str, &str); 6] = [
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("webp", "image/webp"),
        ("gif", "image/gif"),
        ("mp4", "video/mp4"),
        ("webm", "video/webm"),
    ];
    if let Some(t) = TYPES.iter().find(|(_, ct)| Some(*ct) == content_type) {
        return *t;
    }
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let ext = if ext == "jpeg" { "jpg" } else { ext };
    TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .copied()
        .unwrap_or(("bin", "application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_type_comes_from_the_content_type_then_the_url() {
        assert_eq!(
            file_type(Some("image/webp"), "https://x/out"),
            ("webp", "image/webp")
        );
        assert_eq!(
            file_type(None, "https://x/a/out-0.JPEG?sig=1"),
            ("jpg", "image/jpeg")
        );
        assert_eq!(
            file_type(Some("text/plain"), "https://x/v.mp4"),
            ("mp4", "video/mp4")
        );
        assert_eq!(
            file_type(None, "https://x/file"),
            ("bin", "application/octet-stream")
        );
    }
}
