//! `GET /openapi.json`: the API description, generated with `utoipa` from the handlers'
//! `#[utoipa::path]` annotations and the schema types below (which mirror the JSON the
//! handlers write).

use actix_web::HttpResponse;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes;

/// The enqueue body (camelCase, as apps send it).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = EnqueueRequest)]
pub struct EnqueueBody {
    /// One of the ten catalog types (`GET /v1/job-types`).
    #[schema(example = "sdxl_image_fast")]
    job_type: String,
    /// `prompt` (required unless exact copy), `negative_prompt`, `num_images`, `seed`,
    /// `steps`, `guidance`, `reference_image`, `reference_strength`, `denoise_strength`,
    /// `exact_copy_mode`; other keys pass through to the worker.
    #[schema(value_type = Object)]
    metadata: Value,
    /// Pass-through.
    project_id: Option<String>,
    /// Pass-through.
    video_id: Option<String>,
    /// Pass-through.
    image_id: Option<String>,
}

/// A `jobs` row.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Job {
    id: uuid::Uuid,
    user_id: uuid::Uuid,
    job_type: String,
    queue: String,
    #[schema(example = "queued")]
    status: String,
    prompt: String,
    #[schema(value_type = Object)]
    metadata: Value,
    #[schema(value_type = Object)]
    config: Value,
    credits: i32,
    attempts: i32,
    max_attempts: i32,
    error_message: Option<String>,
    enhanced_prompt: Option<String>,
    worker_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The 202 answer to an enqueue.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnqueueAnswer {
    success: bool,
    job: Job,
    message: String,
    /// Waiting jobs in the queue, this one included.
    queue_length: u64,
    model_variant: String,
    job_type: String,
    queue: String,
    /// Jobs that will be served before this one.
    position: u64,
    /// Estimated seconds until it finishes.
    eta_seconds: u64,
}

/// The error body every endpoint uses.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    success: bool,
    error: ErrorDetail,
}

/// Code and message.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    #[schema(example = "invalid_job_type")]
    code: String,
    message: String,
}

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
        routes::health::job_types,
        routes::admin::queues,
        routes::admin::dead_jobs,
        routes::admin::requeue,
        routes::admin::discard,
        routes::admin::workers,
        routes::admin::failures,
        routes::health::metrics,
        routes::health::healthz,
        routes::health::readyz,
    ),
    components(schemas(EnqueueBody, EnqueueAnswer, Job, ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The generated document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
