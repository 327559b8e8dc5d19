//! [`serve`]: the actix server every gpuq service runs — the same middleware (request ids,
//! request logs, closing connections whose body was left unread, CORS for the configured
//! origins), the same slow-client limits from [`ApplicationSettings`], `/healthz` and
//! `/readyz`, a JSON 404 for unknown paths, and [`resource`] for a JSON 405 with `Allow`.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Condition, Next};
use actix_web::{web, App, HttpMessage, HttpServer, Resource};
use tracing_actix_web::{RequestId, TracingLogger};

use crate::health::{self, Readiness};
use crate::{ApiError, ApplicationSettings};

/// How long a stopping server lets in-flight requests finish, seconds: within Kubernetes'
/// default 30 s grace period, so a pod is never killed mid-drain. A callback holds one
/// short transaction; an SSE stream ends when the server stops.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 25;

/// The header carrying the request id that the logs of the request also carry.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Binds `listener` and serves the routes `configure` registers, plus `/healthz` and
/// `/readyz` (probing `readiness`) and a JSON 404 for everything else. Nothing is served
/// until the returned [`Server`] is awaited; it stops on SIGTERM or ctrl-c, letting
/// in-flight requests finish for up to [`SHUTDOWN_TIMEOUT_SECS`].
pub fn serve<F>(
    listener: TcpListener,
    settings: &ApplicationSettings,
    readiness: Readiness,
    configure: F,
) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let readiness = web::Data::new(readiness);
    crate::cors::check(&settings.cors_origins)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let origins = settings.cors_origins.clone();
    let server = HttpServer::new(move || {
        // Outermost: a preflight is answered before routing (and before the 404/405s).
        let cors = crate::cors::middleware(&origins);
        App::new()
            .wrap(from_fn(crate::unread_body::close_if_unread))
            .wrap(from_fn(answer_request_id))
            .wrap(TracingLogger::<crate::request_span::RedactingRootSpan>::new())
            .app_data(readiness.clone())
            .configure(health::configure)
            .configure(configure.clone())
            .default_service(web::to(not_found))
            .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
    })
    // Slow clients: a first request head gets `header_timeout_ms` (then 408); bodies get
    // `body_timeout_ms` in `body::read_limited`; connections per worker are bounded.
    .client_request_timeout(Duration::from_millis(settings.header_timeout_ms))
    .client_disconnect_timeout(Duration::from_millis(settings.disconnect_timeout_ms))
    .max_connections(settings.max_connections)
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(listener)?;
    let server = match settings.workers {
        0 => server,
        n => server.workers(n),
    };
    Ok(server.run())
}

/// Binds `application.host:application.port` (port 0: any free port).
pub fn bind(settings: &ApplicationSettings) -> std::io::Result<TcpListener> {
    let host = if settings.host.contains(':') {
        format!("[{}]", settings.host)
    } else {
        settings.host.clone()
    };
    TcpListener::bind(format!("{host}:{}", settings.port))
}

/// A resource whose other methods answer 405 with `Allow: <allow>`.
pub fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow))
    }))
}

/// Any path no route serves: a JSON 404.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

/// Answers with `X-Request-Id`, the id [`TracingLogger`] gave the request's span, so a
/// client's report can be matched with the logs.
async fn answer_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().copied();
    let mut res = next.call(req).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// Checks a scrape's `Authorization: Bearer <token>` against `token` (constant time) when
/// one is configured; a 401 otherwise. Prometheus sends it with `authorization:
/// {credentials: ...}` (or `bearer_token`) in its scrape config.
pub fn authorize_metrics(
    req: &actix_web::HttpRequest,
    token: Option<&secrecy::SecretString>,
) -> Result<(), ApiError> {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let Some(expected) = token.map(|t| t.expose_secret()).filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "GET /metrics needs the metrics bearer token".into(),
        ))
    }
}
