//! `/healthz`, `/readyz`, and the JSON answers for unknown routes.

use crate::helpers::{json, spawn_app, spawn_app_with};
use secrecy::SecretString;

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn readyz_answers_200_when_postgres_and_redis_answer() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["postgres"], true);
}

#[tokio::test]
async fn readyz_answers_503_when_postgres_is_down() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres:postgres@127.0.0.1:1/none");
        s.database.migrate = false;
    })
    .await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body = json(res).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["message"], "postgres down, redis up");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let res = app.get("/nope").await;
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "not_found");
    let res = app.get("/v1/callback").await;
    assert_eq!(res.status(), 405);
    assert_eq!(json(res).await["success"], false);
}
