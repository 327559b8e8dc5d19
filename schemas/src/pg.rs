//! PostgreSQL pool settings shared by the services (feature `postgres`).

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

/// How long a pooled connection may sit idle before it is pinged on its way out of the
/// pool (PgBouncer's `server_check_delay`, shorter).
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

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
