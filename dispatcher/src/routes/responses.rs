//! The error responses routes share in their OpenAPI annotations
//! (`responses(..., Unauthorized, Unavailable, Internal)` in a route's `#[utoipa::path]`),
//! each with `gpuq_service::ErrorBody` as its body.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::IntoResponses;

/// A response with [`ErrorBody`] as its JSON body.
pub fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

fn one(status: &str, response: ResponseBuilder) -> BTreeMap<String, RefOr<Response>> {
    BTreeMap::from([(status.to_owned(), response.build().into())])
}

/// 401, on every route that takes a bearer token.
pub struct Unauthorized;

impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let challenge = HeaderBuilder::new()
            .schema(utoipa::openapi::Object::with_type(Type::String))
            .description(Some("`Bearer`"))
            .build();
        one(
            "401",
            error_response("no, malformed, expired or refused bearer token")
                .header("WWW-Authenticate", challenge),
        )
    }
}

/// 401 and 403, on `/admin/*`.
pub struct AdminOnly;

impl IntoResponses for AdminOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut out = Unauthorized::responses();
        out.append(&mut one(
            "403",
            error_response("a valid token without admin rights (`admin_required`)"),
        ));
        out
    }
}

/// 503, where Redis or PostgreSQL is needed.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            "503",
            error_response("Redis or PostgreSQL is unavailable; retry later"),
        )
    }
}

/// 500, wherever a handler can fail unexpectedly; the body never carries the cause.
pub struct Internal;

impl IntoResponses for Internal {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            "500",
            error_response("unexpected failure (logged, not sent)"),
        )
    }
}
