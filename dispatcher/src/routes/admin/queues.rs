//! `GET /admin/queues`: every queue's depth by state and lane.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use gpuq_queue::QueueStats;

use crate::auth::Admin;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use crate::ApiError;

/// `GET /admin/queues`.
#[derive(Serialize, ToSchema)]
pub struct QueuesAnswer {
    /// Always true.
    pub success: bool,
    /// One per queue.
    pub queues: Vec<QueueDepth>,
}

/// One queue's counters.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Queue name.
    pub queue: String,
    /// Waiting jobs per lane.
    pub waiting: Waiting,
    /// Claimed by a worker, lease running.
    pub in_flight: u64,
    /// Waiting for a retry.
    pub delayed: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Workers seen within their TTL.
    pub live_workers: u64,
    /// Age of each lane's oldest waiting job.
    pub oldest_wait_ms: OldestWait,
    /// Tenants with jobs waiting, per lane: the fair share takes turns among them.
    pub waiting_tenants: WaitingTenants,
    /// How routed claims went since the queue began (ADR 0020).
    pub routed_claims: RoutedClaims,
}

/// Jobs routed claims gave workers, by whether the worker had the job's model loaded.
#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoutedClaims {
    /// The worker had it loaded.
    pub warm_hits: u64,
    /// The worker had to load it.
    pub model_loads: u64,
}

/// Tenants with jobs waiting, per lane.
#[derive(Serialize, ToSchema)]
pub struct WaitingTenants {
    /// `high` lane.
    pub high: u64,
    /// `normal` lane.
    pub normal: u64,
}

/// Waiting jobs per lane.
#[derive(Serialize, ToSchema)]
pub struct Waiting {
    /// `high` lane.
    pub high: u64,
    /// `normal` lane.
    pub normal: u64,
    /// Both.
    pub total: u64,
}

/// Age of each lane's next job, ms; null when the lane is empty.
#[derive(Serialize, ToSchema)]
pub struct OldestWait {
    /// `high` lane.
    pub high: Option<u64>,
    /// `normal` lane.
    pub normal: Option<u64>,
}

impl From<&QueueStats> for QueueDepth {
    fn from(s: &QueueStats) -> Self {
        Self {
            queue: s.queue.clone(),
            waiting: Waiting {
                high: s.waiting_high,
                normal: s.waiting_normal,
                total: s.waiting(),
            },
            in_flight: s.in_flight,
            delayed: s.delayed,
            dead: s.dead,
            live_workers: s.live_consumers,
            oldest_wait_ms: OldestWait {
                high: s.oldest_wait_high_ms,
                normal: s.oldest_wait_normal_ms,
            },
            waiting_tenants: WaitingTenants {
                high: s.tenants_high,
                normal: s.tenants_normal,
            },
            routed_claims: RoutedClaims::default(),
        }
    }
}

/// `GET /admin/queues`: per queue and lane: waiting, in flight, delayed, dead, live
/// workers, oldest wait; and how routed claims went.
#[utoipa::path(get, path = "/admin/queues", security(("bearer" = [])),
    responses((status = 200, description = "ok", body = QueuesAnswer), AdminOnly, Unavailable, Internal))]
pub async fn queues(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut queues = Vec::new();
    for queue in state.queues.values() {
        let s = queue.stats().await?;
        let per_job = state
            .service_times
            .queue_seconds(&state.db, queue.name().as_str())
            .await;
        state.metrics.observe_queue(&s, per_job);
        let routed = queue.routed_claims().await?;
        state.metrics.observe_routing(queue.name().as_str(), routed);
        queues.push(QueueDepth {
            routed_claims: RoutedClaims {
                warm_hits: routed.warm,
                model_loads: routed.cold,
            },
            ..QueueDepth::from(&s)
        });
    }
    Ok(HttpResponse::Ok().json(QueuesAnswer {
        success: true,
        queues,
    }))
}
