//! gpuq-service: what every gpuq HTTP service shares, so the dispatcher and the callback
//! service answer alike and are configured alike. Services never copy from each other:
//! what both need lives here once.
//!
//! # Layout
//!
//! - [`configuration`]: the one configuration model — shared sections ([`ApplicationSettings`],
//!   [`DatabaseSettings`], [`RedisSettings`], [`QueueSettings`]) and the layered loader
//!   (`configuration/base.yaml` → `$GPUQ_ENVIRONMENT.yaml` → `GPUQ__SECTION__FIELD` → flat
//!   names such as `DATABASE_URL`). Needs no feature, so workers use it too.
//! - [`telemetry`]: the `tracing` subscriber (text or JSON).
//! - [`error`] (feature `http`): [`ApiError`], the one error body and its status mapping.
//! - [`body`] (`http`): reading a request body under a size cap and a deadline.
//! - `unread_body` (`http`): closes, never drains, connections whose body was left unread.
//! - [`health`] (`http`): `/healthz` and `/readyz` with one answer shape and a bounded probe.
//! - [`server`] (`http`): the actix server with the slow-client settings, request ids, 404
//!   and 405 answers, and the metrics token check.
//! - [`cors`] (`http`): cross-origin calls from the configured browser origins.
//! - [`exposition`] (`http`): `/metrics` answers in the text format the scraper asked for.
//! - [`request_span`] (`http`): the request log's span, query values redacted.
//! - [`database`] (`http`): the PostgreSQL pool and the embedded [`MIGRATOR`].
//! - [`Allocator`] (`http`): the memory allocator both services' binaries install.
//! - [`testkit`] (feature `testkit`, dev-only): fresh databases, key namespaces, envelope and
//!   token builders, raw-socket clients and child-process services.

pub mod configuration;
pub mod telemetry;

#[cfg(feature = "http")]
pub mod body;
#[cfg(feature = "http")]
pub mod cors;
#[cfg(feature = "http")]
pub mod database;
#[cfg(feature = "http")]
pub mod error;
#[cfg(feature = "http")]
pub mod exposition;
#[cfg(feature = "http")]
pub mod health;
#[cfg(feature = "http")]
pub mod request_span;
#[cfg(feature = "http")]
pub mod server;
#[cfg(feature = "http")]
mod unread_body;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use configuration::{
    ApplicationSettings, ConfigurationError, DatabaseSettings, Environment, QueueSettings,
    RedisSettings,
};
#[cfg(feature = "http")]
pub use database::{connection_pool, MIGRATOR};
#[cfg(feature = "http")]
pub use error::{ApiError, CreditShortfall, ErrorBody, ErrorDetail};
#[cfg(feature = "http")]
pub use health::Readiness;
#[cfg(feature = "http")]
pub use server::{resource, serve};

/// The allocator of both services' binaries, installed by each `main.rs` with
/// `#[global_allocator]`: declared here it would be imposed on every binary and test that
/// links this crate. Chosen by measurement (ADR 0007, "Both services run on mimalloc").
#[cfg(feature = "http")]
pub use mimalloc::MiMalloc as Allocator;
