//! HTTP routes, one file per resource.

pub(crate) mod admin;
mod admin_ui;
mod body;
pub(crate) mod enqueue;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod jobs;

use actix_web::{web, Resource};

use crate::ApiError;

/// A resource whose other methods answer 405 with `Allow: <allow>`.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow))
    }))
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/jobs", "POST").route(web::post().to(enqueue::enqueue)))
        .service(
            resource("/functions/v1/queue-job", "POST").route(web::post().to(enqueue::enqueue)),
        )
        .service(resource("/v1/jobs/{id}", "GET").route(web::get().to(jobs::get_job)))
        .service(resource("/v1/jobs/{id}/cancel", "POST").route(web::post().to(jobs::cancel_job)))
        .service(resource("/v1/jobs/{id}/events", "GET").route(web::get().to(events::job_events)))
        .service(resource("/v1/job-types", "GET").route(web::get().to(health::job_types)))
        .service(resource("/admin/queues", "GET").route(web::get().to(admin::queues)))
        .service(
            resource("/admin/queues/{queue}/dead", "GET").route(web::get().to(admin::dead_jobs)),
        )
        .service(resource("/admin/jobs/{id}/requeue", "POST").route(web::post().to(admin::requeue)))
        .service(resource("/admin/jobs/{id}/discard", "POST").route(web::post().to(admin::discard)))
        .service(resource("/admin/workers", "GET").route(web::get().to(admin::workers)))
        .service(resource("/admin/failures", "GET").route(web::get().to(admin::failures)))
        .service(
            resource("/openapi.json", "GET").route(web::get().to(crate::openapi::openapi_json)),
        )
        .service(resource("/metrics", "GET").route(web::get().to(health::metrics)))
        .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
        .configure(admin_ui::configure)
        .default_service(web::to(health::not_found));
}
