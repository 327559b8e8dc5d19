//! Helpers for scenarios that run real services: fresh databases, free ports, readiness,
//! tokens, and cleaning a Redis namespace afterwards.

use std::time::Duration;

pub use gpuq_service::testkit::fresh_database;

/// A port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits up to 30 s for `url` to answer 200.
pub async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} never became ready")
}

/// An HS256 user token valid for an hour.
pub fn mint_token(secret: &str, user: uuid::Uuid) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims =
        serde_json::json!({"sub": user.to_string(), "aud": "authenticated", "exp": now + 3600});
    gpuq_service::testkit::token::signed(secret, &claims)
}

/// An HTTP server on a free port that answers 200 to any POST; returns its URL. Used where
/// a scenario measures something before the callback (pickup latency).
pub async fn accept_all_server() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().default_service(actix_web::web::to(|| async {
            actix_web::HttpResponse::Ok().json(serde_json::json!({"success": true}))
        }))
    })
    .workers(1)
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok(format!("http://127.0.0.1:{port}/v1/callback"))
}

/// Deletes every key of a benchmark namespace.
pub async fn drop_namespace(redis_url: &str, ns: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{ns}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
