//! What a browser page on another origin meets: CORS preflights and answers for the
//! configured origins, and following a job with an `EventSource`, which cannot send
//! `Authorization`, through a job-scoped stream token.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

const APP_ORIGIN: &str = "https://app.example.com";

async fn with_origins(origins: &[&str]) -> TestApp {
    let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
    spawn_app_with(move |s| s.application.cors_origins = origins).await
}

/// A browser's preflight of a `supabase.functions.invoke` call.
async fn preflight(app: &TestApp, path: &str, origin: &str, headers: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_allows_what_supabase_js_sends() {
    let app = with_origins(&[APP_ORIGIN, "http://localhost:5173"]).await;
    for path in ["/functions/v1/queue-job", "/v1/jobs", "/v1/jobs/x/cancel"] {
        let res = preflight(
            &app,
            path,
            APP_ORIGIN,
            "authorization, x-client-info, apikey, content-type, idempotency-key",
        )
        .await;
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(header(h, "access-control-allow-origin"), APP_ORIGIN);
        let allowed = header(h, "access-control-allow-headers").to_lowercase();
        for name in [
            "authorization",
            "x-client-info",
            "apikey",
            "content-type",
            "idempotency-key",
        ] {
            assert!(allowed.contains(name), "{name} not in {allowed}");
        }
        assert!(header(h, "access-control-allow-methods").contains("POST"));
    }
}

#[tokio::test]
async fn an_answer_to_an_allowed_origin_names_it_and_exposes_retry_after() {
    let app = with_origins(&[APP_ORIGIN]).await;
    let res = app
        .http
        .post(app.url("/functions/v1/queue-job"))
        .header("Origin", APP_ORIGIN)
        .bearer_auth(token_for(Uuid::new_v4()))
        .json(&job_body("sdxl_image_fast", "a red fox"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let h = res.headers();
    assert_eq!(header(h, "access-control-allow-origin"), APP_ORIGIN);
    assert!(header(h, "access-control-expose-headers")
        .to_lowercase()
        .contains("retry-after"));
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers_but_same_origin_and_server_callers_still_work() {
    let app = with_origins(&[APP_ORIGIN]).await;
    let res = preflight(&app, "/v1/jobs", "https://evil.example", "authorization").await;
    assert_eq!(res.status(), 400);
    assert_eq!(header(res.headers(), "access-control-allow-origin"), "");
    // Served (the browser withholds it from the page), so the dashboard's same-origin
    // calls and curl keep working.
    let res = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Origin", "https://evil.example")
        .bearer_auth(token_for(Uuid::new_v4()))
        .json(&job_body("sdxl_image_fast", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(header(res.headers(), "access-control-allow-origin"), "");
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let app = spawn_app().await;
    let res = preflight(&app, "/v1/jobs", APP_ORIGIN, "authorization").await;
    assert_eq!(header(res.headers(), "access-control-allow-origin"), "");
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn a_wildcard_allows_any_origin_for_development() {
    let app = with_origins(&["*"]).await;
    let res = preflight(
        &app,
        "/v1/jobs",
        "http://127.0.0.1:3000",
        "authorization, content-type",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(res.headers(), "access-control-allow-origin"), "*");
}

#[tokio::test]
async fn a_malformed_origin_stops_the_start_with_its_name() {
    let mut settings = base_settings(fresh_database().await, gpuq_service::testkit::namespace());
    settings.application.cors_origins = vec!["https://app.example.com/".into()];
    let err = gpuq_dispatcher::Application::build(settings)
        .await
        .err()
        .expect("a bad origin is refused");
    assert!(
        format!("{err:#}").contains("https://app.example.com/"),
        "{err:#}"
    );
}

async fn enqueue_for(app: &TestApp, user: Uuid) -> Value {
    let res = app
        .post_job(&token_for(user), &job_body("sdxl_image_fast", "x"))
        .await;
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

async fn events_with(app: &TestApp, id: &str, token: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/jobs/{id}/events?access_token={token}")))
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_enqueue_answer_carries_a_stream_token_that_opens_the_job_events_without_authorization()
{
    let app = with_origins(&[APP_ORIGIN]).await;
    let user = Uuid::new_v4();
    let answer = enqueue_for(&app, user).await;
    let id = answer["job"]["id"].as_str().unwrap();
    let token = answer["streamToken"].as_str().expect("a stream token");
    assert!(answer["streamTokenExpiresAt"].is_string(), "{answer}");
    let res = events_with(&app, id, token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(res.headers(), "access-control-allow-origin"),
        APP_ORIGIN
    );
    let mut body = res.bytes_stream();
    use futures_util::StreamExt;
    let mut seen = String::new();
    while !seen.contains("data: ") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the first event within 5 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"queued\""), "{seen}");
}

#[tokio::test]
async fn a_stream_token_opens_only_its_own_job_and_nothing_else() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let first = enqueue_for(&app, user).await;
    let second = enqueue_for(&app, user).await;
    let token = first["streamToken"].as_str().unwrap();
    let second_id = second["job"]["id"].as_str().unwrap();
    let first_id = first["job"]["id"].as_str().unwrap();
    // Another job of the same user.
    assert_error(
        events_with(&app, second_id, token).await,
        401,
        "unauthorized",
    )
    .await;
    // A user token is no stream token.
    let user_token = token_for(user);
    assert_error(
        events_with(&app, first_id, &user_token).await,
        401,
        "unauthorized",
    )
    .await;
    // A stream token is no user token.
    assert_error(app.get_job(token, first_id).await, 401, "unauthorized").await;
    assert_error(
        events_with(&app, first_id, "garbage").await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn a_fresh_stream_token_is_minted_for_the_owner_only() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let answer = enqueue_for(&app, user).await;
    let id = answer["job"]["id"].as_str().unwrap();
    let mint = |who: String| {
        app.http
            .post(app.url(&format!("/v1/jobs/{id}/stream-token")))
            .bearer_auth(who)
            .send()
    };
    let stranger = mint(token_for(Uuid::new_v4())).await.unwrap();
    assert_error(stranger, 404, "not_found").await;
    let res = mint(token_for(user)).await.unwrap();
    assert_eq!(res.status(), 200);
    let minted: Value = res.json().await.unwrap();
    let url = minted["eventsUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("/v1/jobs/{id}/events?access_token=")));
    let res = app.http.get(app.url(url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
