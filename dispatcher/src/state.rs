//! [`AppState`]: what every handler and background loop shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use gpuq_queue::{Queue, QueueStats, RedisConn, RedisTarget};

use crate::auth::Authenticator;
use crate::configuration::Settings;
use crate::metrics::Metrics;
use crate::recorder::Recorder;
use crate::ApiError;

/// Shared state.
pub struct AppState {
    /// PostgreSQL, the system of record.
    pub db: PgPool,
    /// Writes enqueued jobs to `db` in batches.
    pub recorder: Recorder,
    /// One handle per catalog queue and per overflow queue (ADR 0017), by name.
    pub queues: BTreeMap<String, Queue>,
    /// Shared multiplexed Redis connection (rate limits, events).
    pub redis: RedisConn,
    /// For dedicated connections (SSE readers block on Redis).
    pub redis_target: RedisTarget,
    /// Redis key prefix.
    pub namespace: String,
    /// Bearer-token checks.
    pub auth: Authenticator,
    /// Configuration.
    pub settings: Settings,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Open event streams, bounded per user and in all.
    pub streams: std::sync::Arc<crate::streams::StreamSlots>,
    /// Wakes open event streams (one Redis subscription for all of them).
    pub events: std::sync::Arc<crate::event_hub::EventHub>,
    /// Cancelled when the server stopped: ends the background tasks.
    pub stop: tokio_util::sync::CancellationToken,
    /// Measured run times per type, for ETAs.
    pub service_times: crate::service_times::ServiceTimes,
    /// Tenants' fair-share weights, cached.
    pub weights: crate::tenants::TenantWeights,
    /// What the reconciler's ledger check has verified so far.
    pub ledger_check: crate::credits::check::LedgerCheck,
    /// Tenants known to have a credit account.
    pub credit_accounts: crate::credits::KnownAccounts,
    /// Recent queue snapshots for ETAs, so an enqueue does not pay for a stats call.
    stats_cache: Mutex<HashMap<String, (Instant, QueueStats)>>,
    /// Where the reconciler's scan of each queue's job hash stands.
    reconcile_cursors: Mutex<HashMap<String, u64>>,
}

const STATS_TTL: Duration = Duration::from_secs(1);

impl AppState {
    /// Assembles the state and starts the job recorder (call it inside a tokio runtime).
    pub fn new(
        db: PgPool,
        queues: BTreeMap<String, Queue>,
        redis: RedisConn,
        redis_target: RedisTarget,
        auth: Authenticator,
        settings: Settings,
    ) -> Self {
        let recorder = Recorder::spawn(
            db.clone(),
            crate::jobs_db::RecordRules {
                max_active: settings.limits.max_active_jobs_per_user,
                starting_grant: settings.credits.starting_grant.into(),
            },
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let events = crate::event_hub::EventHub::start(
            secrecy::ExposeSecret::expose_secret(&settings.redis.url).to_owned(),
            gpuq_queue::events_channel(&settings.redis.namespace),
            redis.clone(),
            stop.clone(),
        );
        let streams = crate::streams::StreamSlots::new(
            settings.limits.max_streams_per_user,
            settings.limits.max_streams,
        );
        Self {
            db,
            recorder,
            queues,
            redis,
            redis_target,
            namespace: settings.redis.namespace.clone(),
            auth,
            settings,
            metrics: Metrics::default(),
            streams,
            events,
            stop,
            service_times: Default::default(),
            weights: Default::default(),
            ledger_check: Default::default(),
            credit_accounts: Default::default(),
            stats_cache: Mutex::default(),
            reconcile_cursors: Mutex::default(),
        }
    }

    /// The handle of a catalog queue.
    pub fn queue(&self, name: &str) -> Result<&Queue, ApiError> {
        self.queues
            .get(name)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("queue {name} is not configured")))
    }

    /// The reconciler's scan cursor for `queue` (0: start over).
    pub fn reconcile_cursor(&self, queue: &str) -> u64 {
        self.reconcile_cursors
            .lock()
            .map(|c| c.get(queue).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Stores the reconciler's scan cursor for `queue`.
    pub fn set_reconcile_cursor(&self, queue: &str, cursor: u64) {
        if let Ok(mut c) = self.reconcile_cursors.lock() {
            c.insert(queue.to_owned(), cursor);
        }
    }

    /// A snapshot of `queue` at most a second old.
    pub async fn cached_stats(&self, queue: &Queue) -> Result<QueueStats, ApiError> {
        let name = queue.name().as_str();
        if let Ok(cache) = self.stats_cache.lock() {
            if let Some((at, stats)) = cache.get(name) {
                if at.elapsed() < STATS_TTL {
                    return Ok(stats.clone());
                }
            }
        }
        let stats = queue.stats().await?;
        if let Ok(mut cache) = self.stats_cache.lock() {
            cache.insert(name.to_owned(), (Instant::now(), stats.clone()));
        }
        Ok(stats)
    }

    /// Jobs `queue`'s live workers run at once (from [`Self::cached_stats`]); 0 when none is
    /// live or Redis cannot tell. ETAs and start-deadline admission divide by it.
    pub async fn live_slots(&self, queue: &Queue) -> u64 {
        self.cached_stats(queue).await.map_or(0, |s| s.live_slots)
    }
}
