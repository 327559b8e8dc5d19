//! gpuq-worker-sdk: what a GPU worker links to take jobs from a gpuq queue.
//!
//! Write a [`Handler`] (or a closure) that turns a [`JobEnvelope`] into an [`Output`];
//! the [`Worker`] does the rest: claims jobs without polling, renews their leases from a
//! thread of its own, reports `processing`, progress and the result to the callback
//! service (signed, retried), acks a job only once the result was accepted, stops a
//! cancelled job, survives Redis restarts, and on shutdown hands unfinished jobs back.
//!
//! ```no_run
//! use gpuq_worker_sdk::{shutdown_on_signal, Asset, JobContext, JobError, LocalStorage, Output, Worker};
//! use gpuq_schemas::JobEnvelope;
//!
//! async fn generate(job: JobEnvelope, ctx: JobContext) -> Result<Output, JobError> {
//!     ctx.progress(0.5, "denoising");
//!     let png = vec![0u8; 16]; // run the model here, inside spawn_blocking
//!     let path = ctx.upload(0, "png", png, "image/png").await?;
//!     Ok(Output::images(vec![Asset::new(path).seed(job.config.seed.unwrap_or(0))]))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = Worker::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .queue("sdxl_queue")
//!     .callback_url("http://127.0.0.1:8081/v1/callback")
//!     .callback_secret("dev-secret".to_string().into())
//!     .storage(LocalStorage::new("./outputs"))
//!     .handler(generate)
//!     .build()?;
//! worker.run(shutdown_on_signal()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`Worker`], [`WorkerBuilder`]: configuration, the claim loop, graceful shutdown.
//! - [`Handler`], [`Output`], [`Asset`], [`JobError`]: what user code implements/returns.
//! - [`JobContext`]: attempt, progress, cancellation and uploads for one job.
//! - [`Storage`], [`LocalStorage`], `S3Storage` (feature `s3`): where outputs go.
//! - [`shutdown_on_signal`]: SIGTERM/ctrl-c to a `CancellationToken`.
//! - `settings` (feature `settings`): a worker's settings from the services' configuration
//!   sources (`REDIS_URL`, `GPUQ_QUEUE`, ...), shared by the demo worker and the Python
//!   package.
//! - `demo` (feature `demo`): the demo worker's handler and configuration (deterministic
//!   PNG/GIF). Image encoders and the S3 client are compiled only with these features, so
//!   a worker that links the SDK builds neither unless it asks.
//! - `provider` (feature `provider`): jobs run as predictions of a hosted provider
//!   (Replicate), for overflow and fallback; the `gpuq-provider-worker` binary.
//! - Internals: `job` (one job's life), `lease` (the lease keeper thread), `callback`
//!   (signed reports), `connect` (reaching Redis with backoff).

mod builder;
mod callback;
mod connect;
mod context;
#[cfg(feature = "demo")]
pub mod demo;
mod error;
mod gate;
mod handler;
mod job;
mod lease;
mod models;
#[cfg(feature = "provider")]
pub mod provider;
#[cfg(feature = "settings")]
pub mod settings;
mod shutdown;
mod storage;
mod worker;

pub use builder::WorkerBuilder;
pub use callback::CallbackRetry;
pub use connect::RedisBackoff;
pub use context::{JobContext, WorkGuard};
pub use error::{JobError, WorkerError};
pub use gpuq_queue::valid_model_name;
pub use gpuq_schemas::JobEnvelope;
pub use handler::{Asset, Handler, Output};
pub use shutdown::shutdown_on_signal;
pub use storage::{output_key, LocalStorage, Storage, StorageError, StorageFuture};
#[cfg(feature = "s3")]
pub use storage::{S3Config, S3Storage};
pub use tokio_util::sync::CancellationToken;
pub use worker::Worker;

/// The README's examples, compiled as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
