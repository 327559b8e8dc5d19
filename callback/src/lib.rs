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
//! - [`configuration`]: [`Settings`], layered defaults → YAML → environment.
//! - [`startup`]: [`Application`] (build, port, run) and the shared [`AppState`].
//! - [`routes`]: `POST /v1/callback`, `GET /healthz`, `GET /readyz`.
//! - [`auth`]: [`Verifier`], the signature check.
//! - [`body`]: the capped body reader.
//! - [`record`]: [`Recorder`], one file per transition.
//! - [`storage_path`]: [`normalize`], the pure path normalization, and [`StoragePath`].
//! - [`error`]: the JSON error body; [`telemetry`]: logging.
//! - `unread_body`: closes (never drains) connections whose request body was not read.

pub mod auth;
pub mod body;
pub mod configuration;
pub mod error;
pub mod metrics;
pub mod record;
pub mod routes;
pub mod startup;
pub mod storage_path;
pub mod telemetry;
mod unread_body;

pub use auth::Verifier;
pub use configuration::Settings;
pub use record::{Recorded, Recorder, Report};
pub use startup::{AppState, Application, StartupError, MIGRATOR};
pub use storage_path::{normalize, PathRejection, StoragePath, StorageRules};
