//! [`WorkerBuilder`]: every setting of a worker, checked once by [`WorkerBuilder::build`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gpuq_queue::{ConsumerName, QueueConfig, RedisTarget};
use gpuq_schemas::{JobType, QueueName};
use secrecy::SecretString;

use crate::callback::{CallbackRetry, Reporter};
use crate::connect::{QueueTarget, RedisBackoff};
use crate::handler::ErasedHandler;
use crate::job::Shared;
use crate::models::{Routing, WarmModels};

/// How long a job waits for a worker with its model loaded before any worker that can run
/// it gets it ([`WorkerBuilder::model_wait`]).
const DEFAULT_MODEL_WAIT: Duration = Duration::from_secs(300);
use crate::worker::Worker;
use crate::{Handler, Storage, WorkerError};

/// Builds a [`Worker`]. Required: [`redis_url`](Self::redis_url), [`queue`](Self::queue),
/// [`callback_url`](Self::callback_url), [`callback_secret`](Self::callback_secret) and
/// [`handler`](Self::handler). The defaults suit GPU work: 30 s leases renewed every 10 s,
/// five minutes to finish on shutdown.
#[must_use]
pub struct WorkerBuilder {
    redis_url: Option<String>,
    queue: Option<String>,
    namespace: String,
    concurrency: usize,
    callback_url: Option<String>,
    callback_secret: Option<SecretString>,
    queue_config: QueueConfig,
    heartbeat_every: Duration,
    shutdown_deadline: Duration,
    claim_wait: Duration,
    cancel_grace: Duration,
    run_limits: HashMap<JobType, Duration>,
    exit_if_stuck: bool,
    routing: Option<Routing>,
    progress_every: Duration,
    processing_after: Duration,
    callback_retry: CallbackRetry,
    redis_backoff: RedisBackoff,
    worker_name: Option<String>,
    gpu_name: Option<String>,
    storage: Option<Arc<dyn Storage>>,
    handler: Option<Arc<dyn ErasedHandler>>,
}

impl Default for WorkerBuilder {
    fn default() -> Self {
        Self {
            redis_url: None,
            queue: None,
            namespace: "gpuq".into(),
            concurrency: 1,
            callback_url: None,
            callback_secret: None,
            queue_config: QueueConfig::default(),
            heartbeat_every: Duration::from_secs(10),
            shutdown_deadline: Duration::from_secs(300),
            claim_wait: Duration::from_secs(2),
            cancel_grace: Duration::from_secs(2),
            run_limits: HashMap::new(),
            exit_if_stuck: false,
            routing: None,
            progress_every: Duration::from_secs(1),
            processing_after: Duration::ZERO,
            callback_retry: CallbackRetry::default(),
            redis_backoff: RedisBackoff::default(),
            worker_name: None,
            gpu_name: None,
            storage: None,
            handler: None,
        }
    }
}

impl WorkerBuilder {
    /// Redis to claim from, e.g. `redis://gpuq-worker:pw@redis:6379/0`, or a Redis Cluster
    /// by its seed nodes: `redis+cluster://gpuq-worker:pw@10.0.0.1:6379,10.0.0.2:6379`.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// The queue to serve: `sdxl_queue` or `wan_queue`.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// Redis key namespace; must match the dispatcher's (default `gpuq`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Jobs run at once (default 1: one GPU, one job).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// URL of the callback service's `POST /v1/callback` (or its legacy alias). A base URL
    /// without a path (`http://callback:8081`) means its `/v1/callback` route.
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }

    /// The HMAC secret callbacks are signed with.
    pub fn callback_secret(mut self, secret: SecretString) -> Self {
        self.callback_secret = Some(secret);
        self
    }

    /// How long a claim or heartbeat keeps a job (default 30 s). A worker silent for longer
    /// loses its jobs to redelivery.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.queue_config.lease = lease;
        self
    }

    /// How often leases are renewed (default 10 s); must be shorter than the lease.
    pub fn heartbeat_every(mut self, every: Duration) -> Self {
        self.heartbeat_every = every;
        self
    }

    /// How long running jobs may go on after shutdown starts (default 300 s); the rest are
    /// handed back to the queue.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Longest single blocking claim (default 2 s). A new job wakes the claim at once;
    /// this only bounds how long shutdown waits for an idle claim to return.
    pub fn claim_wait(mut self, wait: Duration) -> Self {
        self.claim_wait = wait;
        self
    }

    /// After a cancel or a run past its limit, how long the handler may take to return by
    /// itself before its future is dropped (default 2 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// How long one attempt of `job_type` may run, per image asked for, instead of the
    /// catalog's `run_limit_seconds`. Past it the handler's context is cancelled; after
    /// [`Self::cancel_grace`] its future is dropped, and the attempt fails, retryable, with
    /// the code `execution_timeout`.
    pub fn run_limit(mut self, job_type: JobType, per_image: Duration) -> Self {
        self.run_limits.insert(job_type, per_image);
        self
    }

    /// Routes claims by model (ADR 0020): this worker is only given jobs whose model is one
    /// of `runnable` (what fits its GPU; a job's model is its `model`, else its
    /// `model_variant`), and among the next jobs in fair order it gets those whose model
    /// its handler said is loaded ([`crate::JobContext::loaded`]) first. A job that waited
    /// [`Self::model_wait`] (300 s unless set) goes to any worker that can run it.
    pub fn models<I, S>(mut self, runnable: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let runnable = runnable.into_iter().map(Into::into).collect();
        self.routing_mut().runnable = Some(runnable);
        self
    }

    /// Routes claims by model ([`Self::models`]), any model runnable, with `max_wait` as the
    /// wait past which a job goes to any worker. Set it above the usual wait in the queue:
    /// past it, routing gives way to plain fair order. Zero: warm jobs always first, and a
    /// cold job waits for a worker with nothing warm to take (no bound).
    pub fn model_wait(mut self, max_wait: Duration) -> Self {
        self.routing_mut().max_wait = max_wait;
        self
    }

    /// The GPU memory, GiB, this worker's jobs may use: a job whose type needs more (the
    /// catalog's `vram_gb`) is never claimed by it. Turns routing on ([`Self::models`]).
    pub fn vram_gb(mut self, gib: u32) -> Self {
        self.routing_mut().vram_gb = Some(gib);
        self
    }

    /// Routes claims by model with any model runnable (replacing a list [`Self::models`]
    /// gave), warm jobs first, with the default wait (300 s) unless [`Self::model_wait`]
    /// set one. [`Self::models`], [`Self::model_wait`] and [`Self::vram_gb`] also turn
    /// routing on.
    pub fn any_model(mut self) -> Self {
        self.routing_mut().runnable = None;
        self
    }

    fn routing_mut(&mut self) -> &mut Routing {
        self.routing.get_or_insert(Routing {
            runnable: None,
            max_wait: DEFAULT_MODEL_WAIT,
            vram_gb: None,
        })
    }

    /// Exit the process (status 70) after reporting an attempt whose handler did not end
    /// even when dropped (stuck in blocking or native code, still holding the GPU), so that
    /// the supervisor restarts a clean worker. Default off: such a handler is only logged.
    pub fn exit_if_stuck(mut self, exit: bool) -> Self {
        self.exit_if_stuck = exit;
        self
    }

    /// Smallest interval between two progress reports of one job (default 1 s).
    pub fn progress_interval(mut self, every: Duration) -> Self {
        self.progress_every = every;
        self
    }

    /// How long a job runs before its `processing` report is sent (default 0: as its
    /// handler starts). A job whose result is in sooner reports its result only: one HTTP
    /// exchange and one PostgreSQL transaction fewer per short job. Its record goes from
    /// `queued` to its end; its start is still its claim's time, webhook targets still hear
    /// `started` before its end, and the wait and run metrics are the same. What changes:
    /// no `processing` event on its stream; progress reported before the `processing`
    /// report reaches the stream only (progress webhooks need a started job); and a job
    /// cancelled sooner leaves no attempt row (at most `after` of GPU time is not metered).
    pub fn report_processing_after(mut self, after: Duration) -> Self {
        self.processing_after = after;
        self
    }

    /// How final reports are retried.
    pub fn callback_retry(mut self, retry: CallbackRetry) -> Self {
        self.callback_retry = retry;
        self
    }

    /// How reconnecting to Redis backs off.
    pub fn redis_backoff(mut self, backoff: RedisBackoff) -> Self {
        self.redis_backoff = backoff;
        self
    }

    /// Queue tunables (retry backoff, signal cap); [`Self::lease`] overrides its lease.
    pub fn queue_config(mut self, config: QueueConfig) -> Self {
        let lease = self.queue_config.lease;
        self.queue_config = QueueConfig { lease, ..config };
        self
    }

    /// Prefix of the unique consumer name (default: the queue name).
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker_name = Some(name.into());
        self
    }

    /// The GPU this worker runs on (e.g. `NVIDIA L40S`; 1 to 128 characters), reported with
    /// each attempt's start and end so metering records which GPU did the work.
    pub fn gpu_name(mut self, name: impl Into<String>) -> Self {
        self.gpu_name = Some(name.into());
        self
    }

    /// Where [`crate::JobContext::upload`] writes.
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Like [`Self::storage`], for a storage chosen at run time.
    pub fn storage_arc(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The job handler.
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Checks the settings and builds the worker. Nothing connects yet: [`Worker::run`]
    /// reaches Redis, retrying until it answers.
    pub fn build(self) -> Result<Worker, WorkerError> {
        let redis_url = self.redis_url.ok_or(WorkerError::Missing("redis_url"))?;
        let queue = self.queue.ok_or(WorkerError::Missing("queue"))?;
        let name = QueueName::parse(&queue).map_err(|e| WorkerError::Invalid(e.to_string()))?;
        let url = self
            .callback_url
            .ok_or(WorkerError::Missing("callback_url"))?;
        let secret = self
            .callback_secret
            .ok_or(WorkerError::Missing("callback_secret"))?;
        let handler = self.handler.ok_or(WorkerError::Missing("handler"))?;
        let runnable = self
            .routing
            .iter()
            .flat_map(|r| r.runnable.iter().flatten());
        if let Some(bad) = runnable
            .into_iter()
            .find(|m| !gpuq_queue::valid_model_name(m))
        {
            return Err(WorkerError::Invalid(format!(
                "model name {bad:?}: 1 to 128 characters without commas, spaces or *"
            )));
        }
        if let Some((job_type, _)) = self.run_limits.iter().find(|(_, d)| d.is_zero()) {
            return Err(WorkerError::Invalid(format!(
                "the run limit of {job_type} must be positive: with zero every job fails at once"
            )));
        }
        if self
            .routing
            .as_ref()
            .is_some_and(|r| r.vram_gb.is_some_and(|v| v == 0))
        {
            return Err(WorkerError::Invalid("vram_gb must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(WorkerError::Invalid(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.heartbeat_every.is_zero() || self.heartbeat_every >= self.queue_config.lease {
            return Err(WorkerError::Invalid(format!(
                "heartbeat_every ({:?}) must be positive and shorter than the lease ({:?})",
                self.heartbeat_every, self.queue_config.lease
            )));
        }
        if self.gpu_name.as_ref().is_some_and(|g| {
            g.is_empty() || g.contains('\0') || g.chars().count() > gpuq_schemas::MAX_GPU_NAME
        }) {
            return Err(WorkerError::Invalid(format!(
                "gpu_name must be 1 to {} characters",
                gpuq_schemas::MAX_GPU_NAME
            )));
        }
        if self.claim_wait.is_zero() {
            return Err(WorkerError::Invalid("claim_wait must be positive".into()));
        }
        let target = RedisTarget::open(&redis_url).map_err(WorkerError::RedisUrl)?;
        let url = crate::callback::callback_url(&url).map_err(WorkerError::Invalid)?;
        let reporter =
            Reporter::new(url, secret, self.callback_retry).map_err(WorkerError::Http)?;
        let consumer = ConsumerName::unique(self.worker_name.as_deref().unwrap_or(&queue));
        Ok(Worker {
            target: QueueTarget {
                target,
                namespace: self.namespace,
                name,
                config: self.queue_config,
                backoff: self.redis_backoff,
            },
            concurrency: self.concurrency,
            heartbeat_every: self.heartbeat_every,
            shutdown_deadline: self.shutdown_deadline,
            claim_wait: self.claim_wait,
            routing: self.routing,
            shared: Arc::new(Shared {
                handler,
                reporter,
                gate: crate::gate::Gate::new(),
                storage: self.storage,
                consumer,
                gpu_name: self.gpu_name,
                progress_every: self.progress_every,
                processing_after: self.processing_after,
                cancel_grace: self.cancel_grace,
                run_limits: self.run_limits,
                exit_if_stuck: self.exit_if_stuck,
                warm: WarmModels::default(),
                redis_backoff: self.redis_backoff,
            }),
        })
    }
}
