//! The gpuq wire contract, shared by every service and by workers in any language.
//!
//! Nothing here performs I/O: these are the types that cross a process boundary, the
//! job-type catalog they refer to, and the rules (status machine, newtype constructors)
//! every service agrees on. The SQL migrations live in `schemas/migrations/` (embedded by
//! `gpuq_service::MIGRATOR`) and the JSON
//! Schema files generated from these types in `schemas/json/`.
//!
//! # Layout
//!
//! - [`catalog`]: the ten job types, their queue, model, credits and defaults — one table.
//! - [`JobId`], [`UserId`], [`QueueName`], [`Tenant`]: identifiers whose constructors reject
//!   bad input.
//! - [`JobStatus`]: the status machine and [`JobStatus::can_transition`].
//! - [`JobEnvelope`]: what workers receive from the queue.
//! - [`callback`]: what workers report back, in the canonical and the legacy shapes.
//! - [`signature`]: the HMAC signature every callback carries.
//! - [`storable`]: text PostgreSQL can store (no U+0000), checked by both services.
//! - [`JobEvent`]: one entry of a job's event stream (status changes, progress);
//!   [`WEBHOOK_EVENTS`]: the webhook events a job's changes are delivered as.

pub mod callback;
pub mod catalog;
mod envelope;
mod event;
mod job_id;
mod queue_name;
pub mod signature;
mod status;
pub mod storable;
mod tenant;
mod user_id;

pub use callback::{
    CallbackPayload, CallbackShape, CallbackStatus, FailureCode, OutputAsset, ParsedCallback,
    MAX_GPU_NAME,
};
pub use catalog::{JobKind, JobType, JobTypeSpec, UnknownJobType};
pub use envelope::{GenerationConfig, JobEnvelope, Lora};
pub use event::{JobEvent, JobEventKind, WEBHOOK_EVENTS};
pub use job_id::{InvalidJobId, JobId};
pub use queue_name::{InvalidQueueName, QueueName};
pub use status::JobStatus;
pub use tenant::{InvalidTenant, Tenant};
pub use user_id::{InvalidUserId, UserId};
