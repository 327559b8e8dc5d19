//! Tenants' fair-share weights and concurrency caps: stored in PostgreSQL
//! (`tenant_weights`). Weights are read by every enqueue through a cache refreshed every
//! [`REFRESH`], so that setting a weight costs enqueues nothing; caps live in Redis, copied
//! there by [`crate::maintenance::sync_caps`]. A tenant without a row has weight 1 and the
//! configured default cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use gpuq_queue::WorkAhead;
use gpuq_schemas::Tenant;

/// How stale another replica's view of a weight may be. The replica that set it sees it at
/// once.
pub const REFRESH: Duration = Duration::from_secs(10);
/// The largest weight: a thousand to one is already more than a fair share.
pub const MAX_WEIGHT: u32 = 1000;

/// One tenant's settings, as the admin API shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighted {
    /// The tenant.
    pub tenant: String,
    /// Its weight, 1 to [`MAX_WEIGHT`].
    pub weight: u32,
    /// Its own concurrency cap (None: the configured default).
    pub max_in_flight: Option<u32>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// A change to a tenant's settings: each field `None` leaves that setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// A new weight.
    pub weight: Option<u32>,
    /// A new cap (`Some(None)`: back to the configured default).
    pub max_in_flight: Option<Option<u32>>,
}

/// The weights, cached.
#[derive(Default)]
pub struct TenantWeights {
    cache: Mutex<Option<(Instant, HashMap<String, u32>)>>,
}

impl TenantWeights {
    /// `tenant`'s weight; 1 without a row, or while the database cannot be read (a
    /// database outage must not stop enqueues that Redis can take).
    pub async fn weight(&self, db: &PgPool, tenant: &Tenant) -> u32 {
        if let Some(w) = self.cached(tenant) {
            return w;
        }
        match list(db).await {
            Ok(rows) => {
                let map: HashMap<_, _> = rows.into_iter().map(|r| (r.tenant, r.weight)).collect();
                let w = map.get(tenant.as_str()).copied().unwrap_or(1);
                if let Ok(mut cache) = self.cache.lock() {
                    *cache = Some((Instant::now(), map));
                }
                w
            }
            Err(e) => {
                tracing::warn!(error = %e, "tenant weights unavailable; counting weight 1");
                1
            }
        }
    }

    /// The expected GPU milliseconds of `work`: each tenant's span times its weight.
    pub async fn gpu_ms(&self, db: &PgPool, work: &WorkAhead) -> u64 {
        let mut weights = HashMap::new();
        for tenant in work.spans.iter().filter_map(|(t, _)| t.as_ref()) {
            weights.insert(tenant.clone(), self.weight(db, tenant).await);
        }
        work.gpu_ms(|t| weights.get(t).copied().unwrap_or(1))
    }

    fn cached(&self, tenant: &Tenant) -> Option<u32> {
        let cache = self.cache.lock().ok()?;
        let (at, map) = cache.as_ref()?;
        (at.elapsed() < REFRESH).then(|| map.get(tenant.as_str()).copied().unwrap_or(1))
    }

    /// Changes `tenant`'s settings and drops this process's cache.
    pub async fn set(
        &self,
        db: &PgPool,
        tenant: &Tenant,
        change: Change,
    ) -> sqlx::Result<Weighted> {
        let cap = change.max_in_flight.flatten().map(|c| c as i32);
        let row: Row = sqlx::query_as(
            "INSERT INTO tenant_weights (tenant, weight, max_in_flight)
             VALUES ($1, coalesce($2, 1), $4)
             ON CONFLICT (tenant) DO UPDATE SET
                 weight = coalesce($2, tenant_weights.weight),
                 max_in_flight = CASE WHEN $3 THEN $4 ELSE tenant_weights.max_in_flight END,
                 updated_at = now()
             RETURNING tenant, weight, max_in_flight, updated_at",
        )
        .bind(tenant.as_str())
        .bind(change.weight.map(|w| w as i32))
        .bind(change.max_in_flight.is_some())
        .bind(cap)
        .fetch_one(db)
        .await?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
        Ok(weighted(row))
    }
}

type Row = (String, i32, Option<i32>, DateTime<Utc>);

/// Every tenant with settings, by name.
pub async fn list(db: &PgPool) -> sqlx::Result<Vec<Weighted>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant, weight, max_in_flight, updated_at FROM tenant_weights ORDER BY tenant",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(weighted).collect())
}

/// The tenants with a concurrency cap of their own, and the version of that list: when the
/// table last changed, ms since the epoch (`Caps::version`, so that a sync that read it
/// before an admin's change cannot undo the change in Redis).
pub async fn caps(db: &PgPool) -> sqlx::Result<(u64, BTreeMap<Tenant, u32>)> {
    let mut tx = db.begin().await?;
    let version: i64 = sqlx::query_scalar(
        "SELECT coalesce((extract(epoch FROM max(updated_at)) * 1000)::bigint, 0) \
         FROM tenant_weights",
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT tenant, max_in_flight FROM tenant_weights WHERE max_in_flight IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let caps = rows
        .into_iter()
        .filter_map(|(t, cap)| Some((t.parse().ok()?, u32::try_from(cap).ok()?)))
        .collect();
    Ok((u64::try_from(version).unwrap_or(0), caps))
}

fn weighted((tenant, weight, max_in_flight, updated_at): Row) -> Weighted {
    Weighted {
        tenant,
        weight: weight.clamp(1, MAX_WEIGHT as i32) as u32,
        max_in_flight: max_in_flight.and_then(|c| u32::try_from(c).ok()),
        updated_at,
    }
}
