//! The sections every gpuq service shares. Each service's `Settings` embeds the ones it
//! uses under these names, so a setting has one name everywhere.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// The HTTP listener and how long it waits for clients (`application.*`): a client that
/// trickles its request (slow loris) is cut off, and idle connections cannot pile up.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationSettings {
    /// Interface to bind, e.g. `0.0.0.0` or `127.0.0.1` (`GPUQ_LISTEN` sets both).
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Actix worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body, bytes; larger ones get 413 before they are buffered.
    pub max_body_bytes: usize,
    /// The whole request body must arrive within this, ms, once the handler starts reading
    /// it; else 408 and the connection is closed (`GPUQ_BODY_TIMEOUT_MS`). Actix-web itself
    /// has no body deadline.
    pub body_timeout_ms: u64,
    /// The head (request line and headers) of a connection's first request must arrive
    /// within this, ms, else 408 (actix-web's `client_request_timeout`).
    pub header_timeout_ms: u64,
    /// After a response that closes the connection, how long the client gets to close its
    /// side before the socket is dropped, ms (actix-web's `client_disconnect_timeout`).
    pub disconnect_timeout_ms: u64,
    /// Open connections per worker thread; further connections wait in the listen
    /// backlog. Bounds the memory idle or slow clients can hold.
    pub max_connections: usize,
    /// The bearer token `GET /metrics` requires (`GPUQ_METRICS_TOKEN`); unset or blank,
    /// `/metrics` is open (keep it on an internal network then).
    #[serde(default)]
    pub metrics_token: Option<SecretString>,
    /// Browser origins (`https://app.example.com`) allowed to call this service from their
    /// pages (`GPUQ_CORS_ORIGINS`, a comma list); `*` allows any (development only). Empty:
    /// no CORS headers, so browsers keep other origins out.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

impl ApplicationSettings {
    /// [`Self::body_timeout_ms`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

/// PostgreSQL, the system of record (`database.*`).
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database` (`DATABASE_URL`).
    pub url: SecretString,
    /// Pool size. A request holds a connection for one short transaction.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering 503, ms.
    pub acquire_timeout_ms: u64,
    /// Apply the migrations at start-up (`GPUQ_MIGRATE`; safe when several instances
    /// start at once: sqlx's PostgreSQL migrator holds an advisory lock).
    pub migrate: bool,
}

/// Redis, the live queues and event streams (`redis.*`).
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `redis+cluster://...` (`REDIS_URL`).
    pub url: SecretString,
    /// Prefix of every key (`GPUQ_REDIS_NAMESPACE`); must match across the fleet. Tests use
    /// a random one.
    pub namespace: String,
}

/// Queue behaviour (`queue.*`). The callback service schedules retries, so it reads the
/// backoff as the dispatcher does: the whole fleet backs off alike.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    /// Waiting jobs per queue beyond which enqueue answers 429 `queue_full`.
    pub max_depth: u64,
    /// Lease length, ms; workers heartbeat well within it.
    pub lease_ms: u64,
    /// Delay before the first retry, ms (doubles per retry, with jitter).
    pub backoff_base_ms: u64,
    /// Largest retry delay, ms.
    pub backoff_max_ms: u64,
    /// How often the reaper and promoter run, ms.
    pub maintenance_interval_ms: u64,
    /// How often the reconciler compares PostgreSQL with Redis, ms.
    pub reconcile_interval_ms: u64,
    /// Unfinished rows younger than this are left to their in-flight enqueue, ms.
    pub reconcile_grace_ms: u64,
}

impl QueueSettings {
    /// The queue crate's configuration.
    pub fn queue_config(&self) -> gpuq_queue::QueueConfig {
        gpuq_queue::QueueConfig {
            max_depth: Some(self.max_depth),
            lease: Duration::from_millis(self.lease_ms),
            backoff: gpuq_queue::Backoff {
                base: Duration::from_millis(self.backoff_base_ms),
                max: Duration::from_millis(self.backoff_max_ms),
            },
            ..gpuq_queue::QueueConfig::default()
        }
    }
}
