//! `GET /openapi.json`: the API description, generated with `utoipa` from the handlers'
//! `#[utoipa::path]` annotations and the schema types of this module, which mirror the JSON
//! the handlers write. `deploy/tests/schemathesis/run.sh` holds the running service to it.
//!
//! # Layout
//!
//! - [`errors`]: the error body and the error responses routes share.
//! - [`bodies`]: the success bodies.
//! - [`enqueue`]: the enqueue request (written out from the catalog) and answer.

pub mod bodies;
pub mod enqueue;
pub mod errors;

use actix_web::{web, HttpResponse};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use enqueue::{EnqueueAnswer, EnqueueBody};
pub use errors::{AdminOnly, Internal, Unauthorized, Unavailable};
pub use gpuq_service::{ErrorBody, ErrorDetail};

use crate::jobs_db::JobRecord;
use crate::routes;
use crate::state::AppState;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "gpuq dispatcher", description = "Enqueue and follow GPU generation jobs."),
    paths(
        routes::enqueue::enqueue,
        routes::jobs::get_job,
        routes::jobs::cancel_job,
        routes::events::job_events,
        routes::metrics::job_types,
        routes::admin::queues,
        routes::admin::dead_jobs,
        routes::admin::requeue,
        routes::admin::discard,
        routes::admin::workers,
        routes::admin::failures,
        routes::metrics::metrics,
        gpuq_service::health::healthz,
        gpuq_service::health::readyz,
    ),
    components(schemas(EnqueueBody, EnqueueAnswer, JobRecord, ErrorBody, ErrorDetail,
        gpuq_service::health::Health, gpuq_service::health::Ready)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document for an instance that accepts reference-image URLs on `reference_hosts`.
pub fn document(reference_hosts: &[String]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    // The request schema is written out rather than derived (see `enqueue`).
    doc["components"]["schemas"]["EnqueueRequest"] = enqueue::request_schema(reference_hosts);
    doc
}

/// `GET /openapi.json`.
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(&state.settings.enqueue.reference_hosts))
}
