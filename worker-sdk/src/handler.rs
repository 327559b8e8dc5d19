//! The [`Handler`] a worker runs for each job, and the [`Output`] it returns.
//!
//! A handler is an `async fn(JobEnvelope, JobContext) -> Result<Output, JobError>`, either
//! a type implementing [`Handler`] or a closure. Each call runs on its own tokio task, apart
//! from the task that renews the job's lease, so a slow handler never loses its job. Put
//! CPU- or GPU-bound work in [`tokio::task::spawn_blocking`] so it does not hold a runtime
//! thread other jobs' reporting needs.

use std::future::Future;
use std::pin::Pin;

use gpuq_schemas::{JobEnvelope, JobKind, OutputAsset};
use serde_json::Value;

use crate::{JobContext, JobError};

/// Runs one job.
pub trait Handler: Send + Sync + 'static {
    /// Produces the job's outputs (uploaded, e.g. with [`JobContext::upload`]) or says why
    /// it could not. `job.attempt` (also [`JobContext::attempt`]) counts deliveries from 1.
    fn handle(
        &self,
        job: JobEnvelope,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Output, JobError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobEnvelope, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Output, JobError>> + Send + 'static,
{
    fn handle(
        &self,
        job: JobEnvelope,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Output, JobError>> + Send {
        self(job, ctx)
    }
}

/// A handler's future, boxed so the worker can hold any handler behind one type.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Output, JobError>> + Send>>;

/// Object-safe face of [`Handler`].
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(self: std::sync::Arc<Self>, job: JobEnvelope, ctx: JobContext) -> HandlerFuture;
}

impl<H: Handler> ErasedHandler for H {
    fn call(self: std::sync::Arc<Self>, job: JobEnvelope, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move { self.handle(job, ctx).await })
    }
}

/// What a job produced: images or one video, plus the enhanced prompt for `*7b*` types.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Images or video.
    pub kind: JobKind,
    /// The files, in output order (the position is the `image_index`).
    pub assets: Vec<Asset>,
    /// The prompt after 7B rewriting, for `*_enhanced` types.
    pub enhanced_prompt: Option<String>,
}

impl Output {
    /// Produced images, in order.
    pub fn images(assets: Vec<Asset>) -> Self {
        Self {
            kind: JobKind::Image,
            assets,
            enhanced_prompt: None,
        }
    }

    /// One produced video.
    pub fn video(asset: Asset) -> Self {
        Self {
            kind: JobKind::Video,
            assets: vec![asset],
            enhanced_prompt: None,
        }
    }

    /// Records the prompt the 7B model rewrote.
    pub fn with_enhanced_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.enhanced_prompt = Some(prompt.into());
        self
    }

    /// The canonical callback form of the assets.
    pub fn to_callback_assets(&self) -> Vec<OutputAsset> {
        self.assets
            .iter()
            .map(|a| OutputAsset {
                kind: Some(self.kind),
                path: a.path.clone(),
                thumbnail_path: a.thumbnail_path.clone(),
                seed: a.seed,
                duration_seconds: a.duration_seconds,
                width: a.width,
                height: a.height,
                metadata: a.metadata.clone(),
            })
            .collect()
    }
}

/// One produced file, as uploaded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Asset {
    /// Bucket-relative key (`<user_id>/<job_id>/<index>.<ext>`), as returned by
    /// [`crate::Storage::put`]; URLs on the storage host are accepted too.
    pub path: String,
    /// A thumbnail, same forms as `path`.
    pub thumbnail_path: Option<String>,
    /// The seed that produced it.
    pub seed: Option<u64>,
    /// Pixel width.
    pub width: Option<u32>,
    /// Pixel height.
    pub height: Option<u32>,
    /// Video length in seconds.
    pub duration_seconds: Option<f64>,
    /// Anything else to record with the row.
    pub metadata: Value,
}

impl Asset {
    /// A file at `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the pixel size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = Some(width);
        self.height = Some(height);
        self
    }

    /// Sets the video length.
    pub fn duration(mut self, seconds: f64) -> Self {
        self.duration_seconds = Some(seconds);
        self
    }

    /// Sets the thumbnail.
    pub fn thumbnail(mut self, path: impl Into<String>) -> Self {
        self.thumbnail_path = Some(path.into());
        self
    }

    /// Sets free-form metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}
