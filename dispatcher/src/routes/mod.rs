//! HTTP routes, one file per resource.

pub(crate) mod admin;
mod admin_ui;
mod body;
pub(crate) mod enqueue;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod jobs;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/jobs", web::post().to(enqueue::enqueue))
        .route("/functions/v1/queue-job", web::post().to(enqueue::enqueue))
        .route("/v1/jobs/{id}", web::get().to(jobs::get_job))
        .route("/v1/jobs/{id}/cancel", web::post().to(jobs::cancel_job))
        .route("/v1/jobs/{id}/events", web::get().to(events::job_events))
        .route("/v1/job-types", web::get().to(health::job_types))
        .route("/admin/queues", web::get().to(admin::queues))
        .route(
            "/admin/queues/{queue}/dead",
            web::get().to(admin::dead_jobs),
        )
        .route("/admin/jobs/{id}/requeue", web::post().to(admin::requeue))
        .route("/admin/jobs/{id}/discard", web::post().to(admin::discard))
        .route("/admin/workers", web::get().to(admin::workers))
        .route("/admin/failures", web::get().to(admin::failures))
        .route("/openapi.json", web::get().to(crate::openapi::openapi_json))
        .route("/metrics", web::get().to(health::metrics))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .configure(admin_ui::configure)
        .default_service(web::to(health::not_found));
}
