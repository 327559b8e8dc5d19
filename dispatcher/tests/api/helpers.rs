//! `spawn_app()` and one helper per endpoint. Each test gets its own PostgreSQL database
//! and Redis namespace, and a dispatcher on a random port.

use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use gpuq_dispatcher::configuration::{AuthSettings, LimitSettings, QueueSettings};
use gpuq_dispatcher::{Application, Settings};
use gpuq_queue::Queue;

pub const JWT_SECRET: &str = "test-jwt-secret-with-enough-entropy-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let base = database_url();
    let mut admin = PgConnection::connect(&base)
        .await
        .expect("PostgreSQL must be running");
    let name = format!("gpuq_test_{}", Uuid::new_v4().simple());
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .unwrap();
    let cut = base.rfind('/').expect("DATABASE_URL names a database");
    format!("{}/{name}", &base[..cut])
}

pub struct TestApp {
    pub address: String,
    pub db: PgPool,
    pub namespace: String,
    pub http: reqwest::Client,
    pub settings: Settings,
}

pub fn base_settings(database_url: String, namespace: String) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        database_url: SecretString::from(database_url),
        redis_url: SecretString::from(redis_url()),
        redis_namespace: namespace,
        migrate: true,
        auth: AuthSettings {
            jwt_secret: Some(SecretString::from(JWT_SECRET)),
            jwks_url: None,
            audience: "authenticated".into(),
            admin_token: Some(SecretString::from(ADMIN_TOKEN)),
        },
        limits: LimitSettings {
            max_active_jobs_per_user: 20,
            requests_per_second: 1000.0,
            burst: 1000,
        },
        queue: QueueSettings {
            max_depth: 10_000,
            lease_ms: 400,
            backoff_base_ms: 50,
            backoff_max_ms: 200,
            maintenance_interval_ms: 50,
            reconcile_interval_ms: 60_000,
            reconcile_grace_ms: 0,
        },
        http: Default::default(),
        reference_hosts: vec!["images.example.com".into()],
        callback_secret: None,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        gpuq_dispatcher::telemetry::init();
    }
    let namespace = format!("test-{}", Uuid::new_v4().simple());
    let mut settings = base_settings(fresh_database().await, namespace.clone());
    customize(&mut settings);
    spawn_with_settings(settings).await
}

pub async fn spawn_with_settings(settings: Settings) -> TestApp {
    use secrecy::ExposeSecret;
    let app = Application::build(settings.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let db = PgPool::connect(settings.database_url.expose_secret())
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    TestApp {
        address,
        db,
        namespace: settings.redis_namespace.clone(),
        http,
        settings,
    }
}

/// A valid user token for `user`.
pub fn token_for(user: Uuid) -> String {
    token_with(
        json!({ "sub": user.to_string(), "aud": "authenticated", "exp": now() + 600, "role": "authenticated" }),
    )
}

/// An HS256 token with exactly these claims.
pub fn token_with(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn job_body(job_type: &str, prompt: &str) -> Value {
    json!({ "jobType": job_type, "metadata": { "prompt": prompt } })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_job(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/jobs"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_job_with_key(
        &self,
        token: &str,
        body: &Value,
        key: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/v1/jobs"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_job(&self, token: &str, id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn cancel_job(&self, token: &str, id: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/jobs/{id}/cancel")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn job_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn status_of(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// A queue handle on the same namespace, to act as a worker would.
    pub async fn queue(&self, name: &str) -> Queue {
        let target = gpuq_queue::RedisTarget::open(&redis_url()).unwrap();
        let conn = gpuq_queue::connect(&target).await.unwrap();
        Queue::new(
            target,
            conn,
            &self.namespace,
            name.parse().unwrap(),
            self.settings.queue.queue_config(),
        )
    }

    pub async fn waiting(&self, name: &str) -> u64 {
        self.queue(name).await.stats().await.unwrap().waiting()
    }
}

/// Asserts an error answer's status and code, and returns its body.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}
