//! gpuq-dispatcher: the HTTP API apps and admins use, and the queue's background loops.
//!
//! # Layout
//!
//! - [`configuration`]: [`Settings`], the shared sections of `gpuq_service` plus the
//!   dispatcher's own, layered defaults → files → environment.
//! - [`dev_token`]: development tokens for the local stack.
//! - [`startup`]: [`Application`] — build, bind, run until SIGTERM.
//! - [`auth`]: bearer tokens (HS256, JWKS RS256/ES256, admin token) → [`auth::Caller`].
//! - [`validation`]: enqueue rules and image-to-image defaults.
//! - [`routes`]: one file per resource; `/admin/` serves the embedded dashboard (`admin-ui/`).
//! - [`jobs_db`]: the `jobs` table.
//! - [`credits`]: job prices, tenant accounts and their ledger (held at enqueue, settled
//!   or released by the transition that ends a job).
//! - [`limits`]: the per-user token bucket.
//! - [`maintenance`]: reaper, promoter and reconciler loops.
//! - [`reconcile`]: bring Redis back in line with PostgreSQL.
//! - [`overflow`]: job types whose jobs go to a hosted provider's queue when their own
//!   fleet is down or too far behind.
//! - [`metrics`]: Prometheus metrics.
//! - [`event_hub`]: one Redis subscription per process wakes every open event stream.
//! - [`streams`]: the bound on open event streams, per user and per process.
//! - [`service_times`]: measured run times per type: the ETA of an enqueue, and what a job
//!   costs its tenant's fair share.
//! - [`tenants`]: tenants' fair-share weights.
//! - [`webhooks`]: endpoints apps register, and the sender that posts the job events the
//!   outbox (a trigger on `jobs`) holds, signed per Standard Webhooks.
//! - [`openapi`]: the generated `/openapi.json`.
//!
//! Errors ([`ApiError`]), bodies, health, telemetry and the server itself come from
//! `gpuq_service`, shared with the callback service.

pub mod auth;
pub mod configuration;
pub mod credits;
pub mod dev_token;
pub mod event_hub;
mod events;
pub mod jobs_db;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod overflow;
pub mod quarantine;
pub mod reconcile;
pub mod recorder;
pub mod routes;
pub mod service_times;
pub mod startup;
mod state;
pub mod streams;
pub mod tenants;
pub mod validation;
pub mod webhooks;

pub use configuration::Settings;
pub use gpuq_service::ApiError;
pub use startup::Application;
pub use state::AppState;
