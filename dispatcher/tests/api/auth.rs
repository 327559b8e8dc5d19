use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims(user: Uuid) -> serde_json::Value {
    json!({ "sub": user.to_string(), "aud": "authenticated", "exp": now() + 600 })
}

async fn refused(app: &TestApp, token: &str) {
    let resp = app.post_job(token, &job_body("sdxl_image_fast", "x")).await;
    assert_error(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn requests_without_valid_credentials_are_401_and_write_nothing() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&job_body("sdxl_image_fast", "x"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(user))
    );
    refused(&app, &none).await;

    let good = token_for(user);
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    refused(&app, &tampered).await;

    let swapped_payload = {
        let parts: Vec<&str> = good.split('.').collect();
        format!("{}.{}.{}", parts[0], b64(&claims(Uuid::new_v4())), parts[2])
    };
    refused(&app, &swapped_payload).await;

    refused(
        &app,
        &token_with(json!({"sub": user.to_string(), "aud": "authenticated", "exp": now() - 3600})),
    )
    .await;
    refused(
        &app,
        &token_with(json!({"sub": user.to_string(), "aud": "other-app", "exp": now() + 600})),
    )
    .await;
    refused(
        &app,
        &token_with(json!({"sub": user.to_string(), "aud": "authenticated"})),
    )
    .await;
    refused(
        &app,
        &token_with(json!({"aud": "authenticated", "exp": now() + 600})),
    )
    .await;
    refused(
        &app,
        &token_with(json!({"sub": "admin", "aud": "authenticated", "exp": now() + 600})),
    )
    .await;
    refused(&app, &token_with(json!({"sub": user.to_string(), "aud": "authenticated", "exp": now() + 7200, "nbf": now() + 3600}))).await;
    let wrong_secret = encode(
        &Header::default(),
        &claims(user),
        &EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    refused(&app, &wrong_secret).await;
    assert_eq!(app.job_count().await, 0);
}

/// Serves the fixture JWKS on a random port.
async fn jwks_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().route(
            "/jwks.json",
            actix_web::web::get().to(|| async {
                actix_web::HttpResponse::Ok()
                    .content_type("application/json")
                    .body(include_str!("../fixtures/jwks.json"))
            }),
        )
    })
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/jwks.json")
}

#[tokio::test]
async fn rs256_tokens_verify_through_the_jwks_and_algorithm_confusion_is_refused() {
    let jwks = jwks_server().await;
    let app = spawn_app_with(|s| s.auth.jwks_url = Some(jwks)).await;
    let user = Uuid::new_v4();
    let key = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa_private.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let rs = encode(&header, &claims(user), &key).unwrap();
    assert_eq!(
        app.post_job(&rs, &job_body("sdxl_image_fast", "x"))
            .await
            .status()
            .as_u16(),
        202
    );

    header.kid = Some("unknown-kid".into());
    refused(&app, &encode(&header, &claims(user), &key).unwrap()).await;

    // HS256 "signed" with the RSA public key: the classic confusion attack.
    let public = include_bytes!("../fixtures/rsa_public.pem");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("test-key-1".into());
    refused(
        &app,
        &encode(&hs, &claims(user), &EncodingKey::from_secret(public)).unwrap(),
    )
    .await;
    assert_eq!(app.job_count().await, 1);
}
