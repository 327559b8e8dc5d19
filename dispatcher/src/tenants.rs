//! Tenants' fair-share weights: stored in PostgreSQL (`tenant_weights`), read by every
//! enqueue through a cache refreshed every [`REFRESH`], so that setting a weight costs
//! enqueues nothing. A tenant without a row has weight 1.

use std::collections::HashMap;
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

/// One tenant's weight, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighted {
    /// The tenant.
    pub tenant: String,
    /// Its weight, 1 to [`MAX_WEIGHT`].
    pub weight: u32,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
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

    /// Sets `tenant`'s weight and drops this process's cache.
    pub async fn set(&self, db: &PgPool, tenant: &Tenant, weight: u32) -> sqlx::Result<Weighted> {
        let row: (String, i32, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO tenant_weights (tenant, weight) VALUES ($1, $2)
             ON CONFLICT (tenant) DO UPDATE SET weight = EXCLUDED.weight, updated_at = now()
             RETURNING tenant, weight, updated_at",
        )
        .bind(tenant.as_str())
        .bind(weight as i32)
        .fetch_one(db)
        .await?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
        Ok(weighted(row))
    }
}

/// Every tenant with a weight set, by name.
pub async fn list(db: &PgPool) -> sqlx::Result<Vec<Weighted>> {
    let rows: Vec<(String, i32, DateTime<Utc>)> =
        sqlx::query_as("SELECT tenant, weight, updated_at FROM tenant_weights ORDER BY tenant")
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(weighted).collect())
}

fn weighted((tenant, weight, updated_at): (String, i32, DateTime<Utc>)) -> Weighted {
    Weighted {
        tenant,
        weight: weight.clamp(1, MAX_WEIGHT as i32) as u32,
        updated_at,
    }
}
