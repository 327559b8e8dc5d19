//! The answers both gpuq services give alike (`gpuq_service::testkit::shapes`), on the
//! dispatcher.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::SecretString;
use uuid::Uuid;

use gpuq_service::testkit::shapes;

use crate::helpers::{spawn_app, spawn_app_with, token_for};

fn user_auth() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let bearer = format!("Bearer {}", token_for(Uuid::new_v4()));
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap());
    headers
}

#[tokio::test]
async fn healthz_answers_the_shared_shape() {
    shapes::healthz(&spawn_app().await.address).await;
}

#[tokio::test]
async fn readyz_answers_the_shared_shape_when_ready() {
    shapes::readyz_ready(&spawn_app().await.address).await;
}

#[tokio::test]
async fn readyz_answers_503_unavailable_fast_when_postgres_is_down() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres:postgres@127.0.0.1:1/none");
        s.database.migrate = false;
    })
    .await;
    shapes::readyz_postgres_down(&app.address).await;
}

#[tokio::test]
async fn an_unknown_path_answers_the_shared_404() {
    shapes::not_found(&spawn_app().await.address).await;
}

#[tokio::test]
async fn a_wrong_method_answers_the_shared_405_with_allow() {
    shapes::method_not_allowed(&spawn_app().await.address, "/v1/jobs", "POST").await;
}

#[tokio::test]
async fn an_oversized_body_answers_the_shared_413() {
    let app = spawn_app().await;
    let limit = app.settings.application.max_body_bytes;
    shapes::payload_too_large(&app.address, "/v1/jobs", limit, user_auth()).await;
}

#[tokio::test]
async fn a_non_json_body_answers_the_shared_415() {
    let app = spawn_app().await;
    shapes::unsupported_media_type(&app.address, "/v1/jobs", user_auth()).await;
}

#[tokio::test]
async fn an_enqueue_while_postgres_is_down_answers_the_shared_503() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres:postgres@127.0.0.1:1/none");
        s.database.migrate = false;
        s.database.acquire_timeout_ms = 200;
    })
    .await;
    let body = crate::helpers::job_body("sdxl_image_fast", "a lighthouse");
    let token = token_for(Uuid::new_v4());
    let res = app.post_job(&token, &body).await;
    shapes::assert_error_body(res, 503, "unavailable").await;
}
