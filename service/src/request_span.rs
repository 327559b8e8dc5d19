//! The request log's root span, as `tracing-actix-web`'s default but with the query
//! string's values redacted: a token sent as `?access_token=...` (an `EventSource` cannot
//! send headers) must never reach the logs. Parameter names are kept, values replaced.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// The root span builder every gpuq service logs requests with.
pub struct RedactingRootSpan;

impl RootSpanBuilder for RedactingRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "default".to_owned());
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let client_ip = request
            .connection_info()
            .realip_remote_addr()
            .unwrap_or("")
            .to_owned();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %redacted_target(request.uri()),
            http.client_ip = %client_ip,
            http.user_agent = %user_agent,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    /// Records the status. Unlike the default builder it logs no `{:?}` of the error (a
    /// backtrace per failed request when `RUST_BACKTRACE` is set): a 500's cause chain is
    /// logged once, in one line, by [`crate::ApiError`]; a refusal gets one info line.
    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(response) => (response.response().status(), response.response().error()),
            Err(error) => (error.as_response_error().status_code(), Some(error)),
        };
        span.record("http.status_code", status.as_u16());
        span.record(
            "otel.status_code",
            if status.is_server_error() {
                "ERROR"
            } else {
                "OK"
            },
        );
        if let Some(error) = error {
            span.record("exception.message", tracing::field::display(error));
            if status.is_client_error() {
                span.in_scope(|| tracing::info!(%status, error = %error, "request refused"));
            }
        }
    }
}

/// The path, and the query with every value replaced by `REDACTED`.
pub fn redacted_target(uri: &actix_web::http::Uri) -> String {
    let path = uri.path();
    match uri.query() {
        None | Some("") => path.to_owned(),
        Some(query) => {
            let names: Vec<String> = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) => format!("{name}=REDACTED"),
                    None => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", names.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted_and_names_kept() {
        let uri: actix_web::http::Uri = "/v1/jobs/x/events?access_token=eyJhbGc.x.y&since=3&flag"
            .parse()
            .unwrap();
        assert_eq!(
            redacted_target(&uri),
            "/v1/jobs/x/events?access_token=REDACTED&since=REDACTED&flag"
        );
        let plain: actix_web::http::Uri = "/healthz".parse().unwrap();
        assert_eq!(redacted_target(&plain), "/healthz");
    }
}
