//! gpuq's reliable Redis queue protocol.
//!
//! At-least-once delivery with per-job leases: a job is leased to one consumer at a time,
//! kept by heartbeats, and redelivered (attempt + 1) when its lease expires. Every state
//! change is one Lua script (`queue/lua/`), atomic on Redis 7.0+ and on Redis Cluster (all
//! keys of a queue share one hash tag and are declared in `KEYS`), called as a function of
//! one Redis Functions library (`scripts.rs`, ADR 0013). The full protocol, for workers in
//! other languages (who send the same files with `EVAL`), is in `docs/protocol.md`.
//!
//! # Layout
//!
//! - [`Keys`]: the key layout, one method per key.
//! - [`RedisTarget`] (a node or a cluster, from a URL) and [`RedisConn`]; [`connect`] opens
//!   the shared connection.
//! - [`Queue`]: a handle on one queue.
//! - Transitions, one file each: [`Queue::enqueue`], [`Queue::claim`] and [`Claimer`]
//!   (blocking), [`Queue::heartbeat`] and [`Queue::release`], [`Queue::ack`] and
//!   [`Queue::fail`] ([`Acker`]: acks in batches), [`Queue::cancel`], [`Queue::reap_once`],
//!   [`Queue::promote_due_once`], [`Queue::expire_unstarted_once`] (start deadlines),
//!   [`Queue::requeue_dead`], [`Queue::stats`], [`Queue::position`] and [`WorkAhead`],
//!   [`Queue::known`] and [`Queue::scan_ids`] (reconciliation).
//! - [`Caps`] and [`Queue::set_caps`]: per-tenant concurrency caps.
//! - [`Queue::quarantine`], [`Queue::release_quarantine`], [`Queue::quarantined`]:
//!   consumers that may not claim (ADR 0019).
//! - [`Route`] and [`Queue::claim_routed`]: claims by model and GPU memory; [`WorkerProfile`],
//!   [`Queue::advertise`], [`Queue::profiles`] and [`Queue::routed_claims`]: what workers
//!   have loaded and how routing went (ADR 0020).
//! - [`publish_event`], [`read_events`]: per-job event streams for SSE.
//! - [`Fence`] and [`Queue::holding`]: which delivery a report is about (stale reports
//!   change nothing).
//! - [`batch`]: requests gathered into batches, one round trip each (acks here; the
//!   services' PostgreSQL writes).
//! - [`QueueConfig`], [`Backoff`], [`Lane`], [`ConsumerName`], [`QueueError`].

mod acks;
mod ahead;
pub mod batch;
mod cancel;
mod caps;
mod claim;
mod config;
mod connection;
mod consumer;
mod enqueue;
mod error;
mod events;
mod fence;
mod finish;
mod keys;
mod lane;
mod lease;
mod maintenance;
mod presence;
mod quarantine;
mod queue;
mod scripts;
mod stats;
mod workers;

pub use acks::Acker;
pub use ahead::WorkAhead;
pub use cancel::CancelOutcome;
pub use caps::{Caps, MAX_CAP};
pub use claim::{valid_model_name, ClaimedJob, Claimer, Route};
pub use config::{Backoff, QueueConfig};
pub use connection::{connect, pubsub_client, RedisConn, RedisTarget, CLUSTER_SCHEME};
pub use consumer::ConsumerName;
pub use enqueue::{EnqueueOptions, EnqueueOutcome};
pub use error::{QueueError, Result};
pub use events::{
    events_channel, events_key, last_event_id, publish_event, read_event, read_events,
};
pub use fence::{Fence, Holding};
pub use finish::{AckOutcome, FailOutcome, Failure};
pub use keys::Keys;
pub use lane::Lane;
pub use lease::LeaseStatus;
pub use maintenance::{DeadJob, Reaped};
pub use presence::{Consumer, InFlight};
pub use queue::Queue;
pub use stats::QueueStats;
pub use workers::{RoutedClaims, WorkerProfile, MAX_PROFILE_BYTES};
