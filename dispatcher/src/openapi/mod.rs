//! `GET /openapi.json`: the API description, generated with `utoipa` from the handlers'
//! `#[utoipa::path]` annotations and the answer types the handlers themselves return (no
//! mirror types: what is described is what is sent). `deploy/tests/schemathesis/run.sh`
//! holds the running service to it. This module depends on `routes`, never the reverse:
//! `startup` registers `/openapi.json` beside the routes.
//!
//! # Layout
//!
//! - [`enqueue`]: the enqueue request schema, written out from the catalog and the
//!   validation bounds, one named variant per queue.

pub mod enqueue;

use actix_web::{web, HttpResponse};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use gpuq_service::{resource, ErrorBody, ErrorDetail};

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
        routes::events::stream_token,
        routes::metrics::job_types,
        routes::admin::queues::queues,
        routes::admin::dead::dead_jobs,
        routes::admin::dead::requeue,
        routes::admin::dead::discard,
        routes::admin::workers::workers,
        routes::admin::workers::release,
        routes::admin::workers::failures,
        routes::admin::tenants::list,
        routes::admin::tenants::set,
        routes::admin::credits::get,
        routes::admin::credits::change,
        routes::admin::credits::usage,
        routes::admin::webhooks::list,
        routes::admin::webhooks::create,
        routes::admin::webhooks::get,
        routes::admin::webhooks::update,
        routes::admin::webhooks::delete,
        routes::admin::webhooks::deliveries,
        routes::admin::webhooks::replay,
        routes::credits::credits,
        routes::credits::usage,
        routes::webhook_key::secret,
        routes::metrics::metrics,
        gpuq_service::health::healthz,
        gpuq_service::health::readyz,
    ),
    components(schemas(routes::enqueue::EnqueueAnswer, JobRecord, ErrorBody, ErrorDetail,
        gpuq_service::CreditShortfall, routes::events::PositionEvent,
        gpuq_service::health::Health, gpuq_service::health::Ready)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document for an instance that accepts reference-image URLs on `reference_hosts`,
/// and jobs' own webhooks on `webhook_hosts` (none: empty).
pub fn document(reference_hosts: &[String], webhook_hosts: &[String]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    // The request schema is written out rather than derived (see `enqueue`).
    for (name, schema) in enqueue::request_schemas(reference_hosts, webhook_hosts) {
        doc["components"]["schemas"][name] = schema;
    }
    // An endpoint's events are a set (utoipa has no `uniqueItems` attribute).
    for body in ["NewEndpointBody", "EndpointChangeBody"] {
        doc["components"]["schemas"][body]["properties"]["events"]["uniqueItems"] =
            Value::Bool(true);
    }
    // Which amounts a kind allows is more than one object schema says.
    doc["components"]["schemas"]["CreditChange"] = routes::admin::credits::change_schema();
    doc["paths"]["/v1/jobs"]["post"]["requestBody"] = serde_json::json!({
        "required": true,
        "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/EnqueueRequest" } } },
    });
    doc
}

/// `GET /openapi.json`.
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    let hooks = &state.settings.webhooks;
    let webhook_hosts: &[String] = if crate::webhooks::job::takes_job_webhooks(hooks) {
        &hooks.job_hosts
    } else {
        &[]
    };
    HttpResponse::Ok().json(document(
        &state.settings.enqueue.reference_hosts,
        webhook_hosts,
    ))
}

/// Registers `GET /openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/openapi.json", "GET").route(web::get().to(openapi_json)));
}
