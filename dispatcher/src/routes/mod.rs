//! HTTP routes, one file per resource.

pub(crate) mod admin;
mod admin_ui;
pub(crate) mod credits;
pub(crate) mod enqueue;
pub(crate) mod events;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub(crate) mod responses;
pub(crate) mod webhook_key;

use actix_web::web;
use gpuq_service::resource;

/// Registers every route but `/openapi.json` (which describes these: `openapi::configure`);
/// `gpuq_service::serve` adds `/healthz`, `/readyz` and the 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/jobs", "POST").route(web::post().to(enqueue::enqueue)))
        .service(
            resource("/functions/v1/queue-job", "POST").route(web::post().to(enqueue::enqueue)),
        )
        .service(resource("/v1/jobs/{id}", "GET").route(web::get().to(jobs::get_job)))
        .service(resource("/v1/jobs/{id}/cancel", "POST").route(web::post().to(jobs::cancel_job)))
        .service(resource("/v1/jobs/{id}/events", "GET").route(web::get().to(events::job_events)))
        .service(
            resource("/v1/jobs/{id}/stream-token", "POST")
                .route(web::post().to(events::stream_token)),
        )
        .service(resource("/v1/credits", "GET").route(web::get().to(credits::credits)))
        .service(resource("/v1/usage", "GET").route(web::get().to(credits::usage)))
        .service(resource("/v1/webhooks/secret", "GET").route(web::get().to(webhook_key::secret)))
        .service(resource("/v1/job-types", "GET").route(web::get().to(metrics::job_types)))
        .service(resource("/admin/queues", "GET").route(web::get().to(admin::queues::queues)))
        .service(
            resource("/admin/queues/{queue}/dead", "GET")
                .route(web::get().to(admin::dead::dead_jobs)),
        )
        .service(
            resource("/admin/jobs/{id}/requeue", "POST")
                .route(web::post().to(admin::dead::requeue)),
        )
        .service(
            resource("/admin/jobs/{id}/discard", "POST")
                .route(web::post().to(admin::dead::discard)),
        )
        .service(resource("/admin/workers", "GET").route(web::get().to(admin::workers::workers)))
        .service(
            resource("/admin/workers/{consumer}/release", "POST")
                .route(web::post().to(admin::workers::release)),
        )
        .service(resource("/admin/failures", "GET").route(web::get().to(admin::workers::failures)))
        .service(resource("/admin/tenants", "GET").route(web::get().to(admin::tenants::list)))
        .service(
            resource("/admin/tenants/{tenant}", "PUT").route(web::put().to(admin::tenants::set)),
        )
        .service(
            resource("/admin/tenants/{tenant}/credits", "GET, POST")
                .route(web::get().to(admin::credits::get))
                .route(web::post().to(admin::credits::change)),
        )
        .service(resource("/admin/usage", "GET").route(web::get().to(admin::credits::usage)))
        .service(
            resource("/admin/webhooks", "GET, POST")
                .route(web::get().to(admin::webhooks::list))
                .route(web::post().to(admin::webhooks::create)),
        )
        .service(
            resource("/admin/webhooks/{id}", "GET, PATCH, DELETE")
                .route(web::get().to(admin::webhooks::get))
                .route(web::patch().to(admin::webhooks::update))
                .route(web::delete().to(admin::webhooks::delete)),
        )
        .service(
            resource("/admin/webhooks/{id}/deliveries", "GET")
                .route(web::get().to(admin::webhooks::deliveries)),
        )
        .service(
            resource("/admin/webhooks/{id}/replay", "POST")
                .route(web::post().to(admin::webhooks::replay)),
        )
        .service(resource("/metrics", "GET").route(web::get().to(metrics::metrics)))
        .configure(admin_ui::configure);
}
