//! `spawn_app()` and one helper per endpoint. Each test gets its own PostgreSQL database
//! and Redis namespace, and a dispatcher on a random port.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::PgPool;

use gpuq_dispatcher::{Application, Settings};
use gpuq_queue::Queue;
use gpuq_service::configuration::Layered;
pub use gpuq_service::testkit::{fresh_database, redis_url, token_for, token_with, JWT_SECRET};

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestApp {
    pub address: String,
    pub db: PgPool,
    pub namespace: String,
    pub http: reqwest::Client,
    pub settings: Settings,
}

/// The defaults, with a test's database and namespace, a free port, fast queue timings and
/// limits no test hits by accident.
pub fn base_settings(database_url: String, namespace: String) -> Settings {
    let mut s = Settings::defaults().expect("default settings");
    s.application.port = 0;
    s.application.workers = 2;
    s.database.url = SecretString::from(database_url);
    s.redis.url = SecretString::from(redis_url());
    s.redis.namespace = namespace;
    s.auth.jwt_secret = Some(SecretString::from(JWT_SECRET));
    s.auth.admin_token = Some(SecretString::from(ADMIN_TOKEN));
    s.limits.requests_per_second = 1000.0;
    s.limits.burst = 1000;
    s.queue.max_depth = 10_000;
    s.queue.lease_ms = 400;
    s.queue.backoff_base_ms = 50;
    s.queue.backoff_max_ms = 200;
    s.queue.maintenance_interval_ms = 50;
    // The reconciler's first pass runs at start-up: with a grace period it never races a
    // test that writes rows directly (the reconcile tests shorten both).
    s.queue.reconcile_interval_ms = 60_000;
    s.queue.reconcile_grace_ms = 60_000;
    s.enqueue.reference_hosts = vec!["images.example.com".into()];
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        gpuq_service::telemetry::init();
    }
    let namespace = gpuq_service::testkit::namespace();
    let mut settings = base_settings(fresh_database().await, namespace.clone());
    customize(&mut settings);
    spawn_with_settings(settings).await
}

pub async fn spawn_with_settings(settings: Settings) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    // Lazy: tests of a service whose database is down still get an app.
    let db = PgPool::connect_lazy(settings.database.url.expose_secret()).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    TestApp {
        address,
        db,
        namespace: settings.redis.namespace.clone(),
        http,
        settings,
    }
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

    /// Enqueues a `job_type` job for `token`'s user (it must be accepted); its id.
    pub async fn enqueued(&self, token: &str, job_type: &str) -> gpuq_schemas::JobId {
        let res = self.post_job(token, &job_body(job_type, "p")).await;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 202, "enqueue refused: {body}");
        body["job"]["id"].as_str().unwrap().parse().unwrap()
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

    /// `GET /metrics` (no token set), as text.
    pub async fn metrics_text(&self) -> String {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
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
