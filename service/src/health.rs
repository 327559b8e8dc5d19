//! `GET /healthz` (the process serves requests) and `GET /readyz` (PostgreSQL and Redis
//! answer within [`PROBE_TIMEOUT`]), the same answers on every gpuq service. Orchestrators
//! probe these every few seconds, so a hung dependency must make the probe fail fast, not
//! hang it.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use gpuq_queue::RedisConn;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::ApiError;

/// How long each dependency gets to answer a readiness probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What `/readyz` probes; register it with `App::app_data(web::Data::new(..))`.
#[derive(Clone)]
pub struct Readiness {
    db: PgPool,
    redis: RedisConn,
}

/// The `/healthz` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always true.
    pub success: bool,
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The `/readyz` answer when every dependency answers (otherwise a 503 error body naming
/// the one that does not).
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always true.
    pub success: bool,
    /// Always `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// PostgreSQL answered.
    pub postgres: bool,
    /// Redis answered.
    pub redis: bool,
}

impl Readiness {
    /// Probes `db` and `redis`.
    pub fn new(db: PgPool, redis: RedisConn) -> Self {
        Self { db, redis }
    }

    /// Whether PostgreSQL and Redis each answered within [`PROBE_TIMEOUT`], probed at once.
    pub async fn probe(&self) -> (bool, bool) {
        let pg = tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&self.db));
        let mut conn = self.redis.clone();
        let ping = redis::cmd("PING");
        let rd = tokio::time::timeout(PROBE_TIMEOUT, ping.query_async::<String>(&mut conn));
        let (pg, rd) = tokio::join!(pg, rd);
        (
            matches!(pg, Ok(Ok(_))),
            matches!(rd, Ok(Ok(ref pong)) if pong == "PONG"),
        )
    }
}

/// `GET /healthz`: 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        success: true,
        status: "ok",
    })
}

/// `GET /readyz`: 200 when PostgreSQL and Redis answer, else 503 `unavailable` naming the
/// one that does not.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready", body = Ready),
    (status = 503, description = "a dependency does not answer within a second", body = crate::ErrorBody)))]
pub async fn readyz(readiness: web::Data<Readiness>) -> Result<HttpResponse, ApiError> {
    let (postgres, redis) = readiness.probe().await;
    if postgres && redis {
        return Ok(HttpResponse::Ok().json(Ready {
            success: true,
            status: "ready",
            postgres,
            redis,
        }));
    }
    let up = |ok: bool| if ok { "up" } else { "down" };
    Err(ApiError::Unavailable(format!(
        "not ready: postgres {}, redis {}",
        up(postgres),
        up(redis)
    )))
}

/// Registers `/healthz` and `/readyz` (other methods: 405).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(crate::resource("/readyz", "GET").route(web::get().to(readyz)));
}
