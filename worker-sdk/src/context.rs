//! [`JobContext`]: what a handler can ask of the worker while it runs a job — the attempt
//! number, progress reports, cancellation, and uploads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gpuq_queue::Fence;
use gpuq_schemas::callback::Progress;
use gpuq_schemas::{CallbackPayload, CallbackStatus, JobId, UserId};
use tokio_util::sync::CancellationToken;

use crate::callback::Reporter;
use crate::models::WarmModels;
use crate::storage::output_key;
use crate::{JobError, Storage, StorageError};

/// The handler's view of its job. Cheap to clone; clones share state, so a clone moved
/// into `spawn_blocking` sees the same cancellation and throttling.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    job_id: JobId,
    fence: Fence,
    user_id: UserId,
    bucket: String,
    worker_id: String,
    cancel: CancellationToken,
    storage: Option<Arc<dyn Storage>>,
    reporter: Reporter,
    progress_every: Duration,
    warm: WarmModels,
    last_progress: Mutex<Option<Instant>>,
    finished: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// Read-held by [`JobContext::hold_work`] guards; the worker takes it for writing to
    /// know that the handler's work really ended.
    work: Arc<tokio::sync::RwLock<()>>,
}

/// Proof that a handler's work is still running somewhere the worker cannot stop (see
/// [`JobContext::hold_work`]); drop it when that work has ended.
#[derive(Debug)]
pub struct WorkGuard(#[allow(dead_code)] Option<tokio::sync::OwnedRwLockReadGuard<()>>);

/// Everything the worker hands to [`JobContext::new`].
pub(crate) struct ContextParts {
    pub job_id: JobId,
    pub fence: Fence,
    pub user_id: UserId,
    pub bucket: String,
    pub worker_id: String,
    pub cancel: CancellationToken,
    pub storage: Option<Arc<dyn Storage>>,
    pub reporter: Reporter,
    pub progress_every: Duration,
    pub warm: WarmModels,
}

impl JobContext {
    pub(crate) fn new(p: ContextParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                job_id: p.job_id,
                fence: p.fence,
                user_id: p.user_id,
                bucket: p.bucket,
                worker_id: p.worker_id,
                cancel: p.cancel,
                storage: p.storage,
                reporter: p.reporter,
                progress_every: p.progress_every,
                warm: p.warm,
                last_progress: Mutex::new(None),
                finished: AtomicBool::new(false),
                runtime: tokio::runtime::Handle::current(),
                work: Arc::default(),
            }),
        }
    }

    /// For handlers whose work runs where dropping the handler cannot stop it (a language
    /// binding's thread, a blocking task): hold the guard until that work has ended. A
    /// handler past its run limit whose guard is still held after the cancel grace counts
    /// as stuck, and [`crate::WorkerBuilder::exit_if_stuck`] applies (ADR 0018).
    pub fn hold_work(&self) -> WorkGuard {
        WorkGuard(Arc::clone(&self.inner.work).try_read_owned().ok())
    }

    /// Resolves once no [`WorkGuard`] of this job is held.
    pub(crate) async fn work_ended(&self) {
        drop(Arc::clone(&self.inner.work).write_owned().await);
    }

    /// Tells the worker that `model` (a job's `model`, else its `model_variant`, or the name
    /// of one of its `loras`) is loaded now: a worker that routes by model
    /// ([`crate::WorkerBuilder::models`]) is then given jobs that need it first (ADR 0020),
    /// and counts a load in the profile it advertises. Names a claim cannot carry (empty,
    /// over 128 characters, with a comma, space or `*`) are ignored.
    pub fn loaded(&self, model: &str) {
        if gpuq_queue::valid_model_name(model) {
            self.inner.warm.loaded(model);
        } else {
            tracing::warn!(
                model = model.chars().take(64).collect::<String>(),
                "ctx.loaded: not a model name a claim can carry; routing ignores it"
            );
        }
    }

    /// Tells the worker that `model` (a checkpoint or a LoRA) is no longer loaded.
    pub fn evicted(&self, model: &str) {
        self.inner.warm.evicted(model);
    }

    /// The job's id.
    pub fn job_id(&self) -> JobId {
        self.inner.job_id
    }

    /// This delivery's attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.fence.attempt
    }

    /// This delivery's fence token: the callback service applies a report only with the
    /// fence of the job's current delivery.
    pub fn fence(&self) -> &str {
        &self.inner.fence.token
    }

    /// Reports progress (`fraction` in 0..=1) to the callback service, which feeds the
    /// job's event stream. Best effort and non-blocking: sent from a background task, at
    /// most once per progress interval (a report of 1.0 always goes), never retried.
    /// Callable from any thread, `spawn_blocking` included.
    pub fn progress(&self, fraction: f64, message: impl Into<String>) {
        let inner = &self.inner;
        if inner.finished.load(Ordering::Acquire) || inner.cancel.is_cancelled() {
            return;
        }
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        {
            let mut last = inner
                .last_progress
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if fraction < 1.0 && last.is_some_and(|t| now - t < inner.progress_every) {
                return;
            }
            *last = Some(now);
        }
        let payload = CallbackPayload {
            job_id: inner.job_id,
            status: CallbackStatus::Progress,
            worker_id: Some(inner.worker_id.clone()),
            attempt: Some(inner.fence.attempt),
            fence: Some(inner.fence.token.clone()),
            outputs: Vec::new(),
            error: None,
            enhanced_prompt: None,
            progress: Some(Progress {
                fraction,
                message: Some(message.into()),
            }),
            gpu: None,
        };
        let reporter = inner.reporter.clone();
        inner.runtime.spawn(async move {
            if let Err(e) = reporter.send_with(&payload, 0).await {
                tracing::debug!(job_id = %payload.job_id, error = %e, "progress report dropped");
            }
        });
    }

    /// Resolves when the worker stops caring about this job's result: the job was
    /// cancelled, its lease was lost, or a shutdown deadline passed. Select on it next to
    /// long `async` work; the worker drops the handler's future shortly after anyway.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Whether [`Self::cancelled`] has fired; poll it between steps of blocking work.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// A token that fires with [`Self::cancelled`], for code that takes a
    /// `CancellationToken`.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.cancel.child_token()
    }

    /// The configured storage, if any.
    pub fn storage(&self) -> Option<&Arc<dyn Storage>> {
        self.inner.storage.as_ref()
    }

    /// The job's bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The key of output `index`: `<user_id>/<job_id>/<index>.<ext>`.
    pub fn output_key(&self, index: usize, ext: &str) -> String {
        output_key(&self.inner.user_id, &self.inner.job_id, index, ext)
    }

    /// Uploads output `index` to the job's bucket under [`Self::output_key`] and returns
    /// the path to report. Storage errors are retryable.
    pub async fn upload(
        &self,
        index: usize,
        ext: &str,
        bytes: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<String, JobError> {
        let storage = self.storage().ok_or(StorageError::NotConfigured)?;
        let key = self.output_key(index, ext);
        Ok(storage
            .put(&self.inner.bucket, &key, bytes.into(), content_type)
            .await?)
    }

    /// Stops further progress reports (the final result is about to be sent).
    pub(crate) fn finish(&self) {
        self.inner.finished.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.inner.job_id)
            .field("attempt", &self.inner.fence.attempt)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}
