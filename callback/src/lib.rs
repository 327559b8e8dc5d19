//! gpuq-callback: the service GPU workers report to.
//!
//! A worker POSTs a signed callback (`processing`, `progress`, `completed`, `failed`) in
//! the SDK's canonical shape or one of the two legacy shapes. The service checks the HMAC
//! signature over the raw body, parses, locks the job row, applies the transition allowed
//! by the status machine, writes `images`/`videos` rows with normalized storage paths,
//! tells Redis (ack, or retry / dead-letter through the queue crate) and publishes the
//! change on the job's event stream for the dispatcher's SSE endpoint.
//!
//! # Layout
//!
//! - [`configuration`]: [`Settings`], the shared sections of `gpuq_service` plus the
//!   service's own, layered defaults → files → environment.
//! - [`startup`]: [`Application`] (build, port, run) and the shared [`AppState`].
//! - [`routes`]: `POST /v1/callback`, `GET /metrics`.
//! - [`auth`]: [`Verifier`], the signature check.
//! - [`record`]: [`Recorder`], one file per transition.
//! - [`storage_path`]: [`normalize`], the pure path normalization, and [`StoragePath`].
//!
//! The error body, body limits, `/healthz`, `/readyz`, telemetry and the server itself come
//! from `gpuq_service`, shared with the dispatcher.

pub mod auth;
pub mod configuration;
pub mod metrics;
pub mod record;
pub mod routes;
pub mod startup;
pub mod storage_path;

pub use auth::Verifier;
pub use configuration::Settings;
pub use record::{HealthSettings, Recorded, Recorder, Stale, POISON_JOB};
pub use startup::{AppState, Application, StartupError};
pub use storage_path::{normalize, PathRejection, StoragePath, StorageRules};
