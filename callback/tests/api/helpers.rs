//! Test harness: each test gets its own PostgreSQL database (random name, migrated), its
//! own Redis key namespace and its own server on a random port, so tests run in parallel
//! against the shared local services and never flush anything.

use std::sync::LazyLock;
use std::time::Duration;

use gpuq_callback::{Application, Settings};
use gpuq_queue::{
    ConsumerName, EnqueueOptions, EnqueueOutcome, Queue, QueueConfig, RedisConn, RedisTarget,
};
use gpuq_schemas::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use gpuq_schemas::{JobEvent, JobId, JobType, QueueName, UserId};
use gpuq_service::configuration::Layered;
use gpuq_service::testkit::{envelope, fresh_database, namespace, redis_url};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;

/// The first secret signs by default; the second is the "rotated" key.
pub const SECRETS: [&str; 2] = ["current-secret", "next-secret"];
pub const STORAGE_HOST: &str = "https://proj.supabase.co";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        gpuq_service::telemetry::init();
    }
});

pub struct TestApp {
    pub address: String,
    pub db: PgPool,
    pub namespace: String,
    pub http: reqwest::Client,
    pub redis: RedisConn,
    redis_target: RedisTarget,
}

/// A job row in PostgreSQL, enqueued (and, unless asked otherwise, claimed) in Redis.
#[derive(Debug, Clone)]
pub struct TestJob {
    pub id: JobId,
    pub user: UserId,
    pub job_type: JobType,
    pub consumer: ConsumerName,
}

impl TestJob {
    /// `"<user>/<name>"`, a key in the job's own folder.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.user)
    }
}

/// The columns tests look at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRecord {
    pub status: String,
    pub attempts: i32,
    pub error_message: Option<String>,
    pub error_code: Option<String>,
    pub enhanced_prompt: Option<String>,
    pub worker_id: Option<String>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One `images` or `videos` row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutputRecord {
    pub idx: i32,
    pub bucket: String,
    pub storage_path: String,
    pub thumbnail_path: Option<String>,
    pub seed: Option<i64>,
    pub prompt: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a chance to adjust the settings before the build.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TRACING);
    let db_url = fresh_database().await;
    let namespace = namespace();
    let mut settings = Settings::defaults().expect("default settings");
    settings.application.host = "127.0.0.1".into();
    settings.application.port = 0;
    settings.application.workers = 2;
    settings.database.url = SecretString::from(db_url.clone());
    settings.database.max_connections = 10;
    settings.redis.url = SecretString::from(redis_url());
    settings.redis.namespace = namespace.clone();
    settings.queue.backoff_base_ms = 50;
    settings.queue.backoff_max_ms = 200;
    settings.auth.secrets = SECRETS.iter().map(|s| SecretString::from(*s)).collect();
    settings.storage.host = Some(STORAGE_HOST.into());
    adjust(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let redis_target = RedisTarget::open(&redis_url()).unwrap();
    let redis = gpuq_queue::connect(&redis_target).await.expect("redis");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db: PgPool::connect(&db_url).await.expect("test database"),
        namespace,
        http: reqwest::Client::new(),
        redis,
        redis_target,
    }
}

impl TestApp {
    pub fn queue(&self, job_type: JobType) -> Queue {
        let config = QueueConfig {
            lease: Duration::from_secs(30),
            ..QueueConfig::default()
        };
        Queue::new(
            self.redis_target.clone(),
            self.redis.clone(),
            &self.namespace,
            QueueName::parse(job_type.spec().queue).unwrap(),
            config,
        )
    }

    /// A job of `job_type` with the catalog's `max_attempts`, enqueued and claimed.
    pub async fn job(&self, job_type: JobType) -> TestJob {
        self.job_with(job_type, job_type.spec().max_attempts, true)
            .await
    }

    /// A job row plus its Redis copy; claimed by a fresh consumer when `claim`.
    pub async fn job_with(&self, job_type: JobType, max_attempts: u32, claim: bool) -> TestJob {
        let spec = job_type.spec();
        let id = JobId::new();
        let user: UserId = uuid::Uuid::new_v4().into();
        let queue = self.queue(job_type);
        let mut envelope = envelope(job_type);
        envelope.job_id = id;
        envelope.user_id = user;
        envelope.max_attempts = max_attempts;
        // The largest batch the type allows: tests report several outputs.
        envelope.config.num_images = spec.allowed_num_images.iter().copied().max().unwrap_or(1);
        sqlx::query(
            "INSERT INTO jobs (id, user_id, job_type, queue, prompt, max_attempts, envelope) \
             VALUES ($1, $2, $3, $4, 'a lighthouse at dusk', $5, $6)",
        )
        .bind(id.as_uuid())
        .bind(user.as_uuid())
        .bind(job_type.as_str())
        .bind(spec.queue)
        .bind(max_attempts as i32)
        .bind(sqlx::types::Json(&envelope))
        .execute(&self.db)
        .await
        .expect("insert job");
        let out = queue
            .enqueue(&envelope, &EnqueueOptions::default())
            .await
            .expect("enqueue");
        assert!(matches!(out, EnqueueOutcome::Enqueued { .. }), "{out:?}");
        let consumer = ConsumerName::unique("test-worker");
        if claim {
            self.claim(job_type, &consumer, id).await;
        }
        TestJob {
            id,
            user,
            job_type,
            consumer,
        }
    }

    /// Makes the lease of `id` run out now and reaps it: the job waits again, its holder
    /// no longer holds it.
    pub async fn expire_lease(&self, job_type: JobType, id: JobId) {
        let queue = self.queue(job_type);
        let _: i64 = redis::cmd("ZADD")
            .arg(queue.keys().leases())
            .arg(0)
            .arg(id.to_string())
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        let reaped = queue.reap_once().await.unwrap();
        assert!(reaped.requeued.contains(&id), "{reaped:?}");
    }

    /// Waits for the retry of `job` to come due, promotes it, and has `consumer` claim it
    /// (and whatever else is waiting: other retries may come due first).
    pub async fn redeliver(&self, job: &TestJob, consumer: &ConsumerName) {
        let queue = self.queue(job.job_type);
        for _ in 0..100 {
            queue.promote_due_once().await.unwrap();
            let claimed = queue.claim(consumer, 100).await.unwrap();
            if claimed.iter().any(|c| c.id == job.id) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the retry of job {} never came due", job.id);
    }

    /// Claims jobs of the queue until `id` is leased to `consumer`.
    pub async fn claim(&self, job_type: JobType, consumer: &ConsumerName, id: JobId) {
        let claimed = self.queue(job_type).claim(consumer, 100).await.unwrap();
        assert!(claimed.iter().any(|c| c.id == id), "job {id} was claimed");
    }

    /// Posts `body` as the job's current holder would (the SDK): a canonical body (one
    /// with `jobId` and no legacy field) gets the holder's `workerId`, `attempt` and
    /// `fence` where it has none. Signed with the first secret, now.
    pub async fn post_callback(&self, body: &Value) -> reqwest::Response {
        self.post_exact(&self.as_holder(body).await).await
    }

    /// `body` as the job's current holder would send it: see [`Self::post_callback`].
    pub async fn as_holder(&self, body: &Value) -> Value {
        let mut body = body.clone();
        self.fill_fence(&mut body).await;
        body
    }

    /// The current claim of `id`, in whichever queue holds it.
    pub async fn holding(&self, id: JobId) -> Option<gpuq_queue::Holding> {
        for job_type in [JobType::SdxlImageFast, JobType::VideoFast] {
            if let Some(h) = self.queue(job_type).holding(id).await.unwrap() {
                return Some(h);
            }
        }
        None
    }

    async fn fill_fence(&self, body: &mut Value) {
        let legacy = [
            "job_id",
            "filePath",
            "outputUrl",
            "imageUrls",
            "errorMessage",
        ];
        let Some(map) = body.as_object_mut() else {
            return;
        };
        if legacy.iter().any(|k| map.contains_key(*k)) {
            return;
        }
        let Some(id) = map
            .get("jobId")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        else {
            return;
        };
        let Some(holding) = self.holding(id).await else {
            return;
        };
        map.entry("workerId")
            .or_insert(holding.consumer.clone().into());
        map.entry("attempt").or_insert(holding.fence.attempt.into());
        map.entry("fence")
            .or_insert(holding.fence.token.clone().into());
    }

    /// Signs `body` with the first secret, now, and posts it to `/v1/callback` unchanged.
    pub async fn post_exact(&self, body: &Value) -> reqwest::Response {
        let raw = serde_json::to_vec(body).unwrap();
        let ts = chrono::Utc::now().timestamp();
        let sig = sign(SECRETS[0].as_bytes(), ts, &raw);
        self.post_raw("/v1/callback", raw, Some((ts.to_string(), sig)))
            .await
    }

    /// Posts `body` to `path` with the given timestamp and signature headers, if any.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        signature: Option<(String, String)>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.address))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some((ts, sig)) = signature {
            req = req
                .header(TIMESTAMP_HEADER, ts)
                .header(SIGNATURE_HEADER, sig);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn job_row(&self, id: JobId) -> JobRecord {
        sqlx::query_as(
            "SELECT status, attempts, error_message, error_code, enhanced_prompt, worker_id, \
             started_at, completed_at FROM jobs WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_one(&self.db)
        .await
        .expect("job row")
    }

    pub async fn images(&self, id: JobId) -> Vec<OutputRecord> {
        self.outputs("images", "image_index", id).await
    }

    pub async fn videos(&self, id: JobId) -> Vec<OutputRecord> {
        self.outputs("videos", "video_index", id).await
    }

    async fn outputs(&self, table: &str, index: &str, id: JobId) -> Vec<OutputRecord> {
        let sql = format!(
            "SELECT {index} AS idx, bucket, storage_path, thumbnail_path, seed, prompt \
             FROM {table} WHERE job_id = $1 ORDER BY {index}"
        );
        sqlx::query_as(&sql)
            .bind(id.as_uuid())
            .fetch_all(&self.db)
            .await
            .expect("output rows")
    }

    /// Every event published for `id` so far.
    pub async fn events(&self, id: JobId) -> Vec<JobEvent> {
        let mut conn = self.redis.clone();
        gpuq_queue::read_events(&mut conn, &self.namespace, id, "0", Duration::ZERO)
            .await
            .expect("events")
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// Whether `id` is in the queue's sorted set `key` (delayed, dead, leases).
    pub async fn in_set(&self, key: &str, id: JobId) -> bool {
        let mut conn = self.redis.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(key)
            .arg(id.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        score.is_some()
    }

    /// Whether Redis still holds the job anywhere.
    pub async fn in_redis(&self, job_type: JobType, id: JobId) -> bool {
        let mut conn = self.redis.clone();
        redis::cmd("HEXISTS")
            .arg(self.queue(job_type).keys().jobs())
            .arg(id.to_string())
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// The body of an answer, as JSON.
pub async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}
