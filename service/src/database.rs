//! PostgreSQL: the pool every service opens from [`DatabaseSettings`], and the migrations of
//! `schemas/migrations`, embedded once in [`MIGRATOR`].

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::DatabaseSettings;

/// The SQL migrations, embedded in every binary. Concurrent runners serialize on sqlx's
/// advisory lock, so many replicas may migrate at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../schemas/migrations");

/// How long a pooled connection may sit idle before it is pinged on its way out of the
/// pool (PgBouncer's `server_check_delay`, shorter).
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// A lazily connecting pool: the service starts (and `/readyz` says 503) while PostgreSQL
/// is still coming up, unless migrations must run first.
pub fn connection_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(settings.url.expose_secret())?;
    Ok(pool_options(
        settings.max_connections,
        Duration::from_millis(settings.acquire_timeout_ms),
    )
    .connect_lazy_with(options))
}

/// Pool options with `max` connections and `acquire_timeout`.
///
/// sqlx pings every connection before handing it out: a round trip and a PostgreSQL
/// wakeup per request (its unconditional ping on release was 7 % of the dispatcher's CPU
/// under load, per perf). Here only a connection idle for [`CHECK_IDLE_AFTER`] or more is
/// pinged; a busy one has just proven itself, and one that broke since fails its query
/// (the request answers 503) and is dropped from the pool.
pub fn pool_options(max: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Serializes, within a transaction, the judgements and releases of one worker's quarantine
/// (ADR 0019): the callback service's verdict and the dispatcher's release take this lock,
/// so a verdict built on failures from before a release cannot land after it.
pub async fn lock_worker(conn: &mut sqlx::PgConnection, consumer: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('gpuq-worker:' || $1, 0))")
        .bind(consumer)
        .execute(conn)
        .await
        .map(drop)
}
