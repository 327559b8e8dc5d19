//! Test helpers: a queue in its own random namespace on the real Redis (a single node, or
//! a cluster when `REDIS_URL` is a `redis+cluster://` URL).

#![allow(dead_code)]

use std::time::Duration;

use gpuq_queue::{Queue, QueueConfig, RedisConn, RedisTarget};
use gpuq_schemas::{GenerationConfig, JobEnvelope, JobId, JobType, QueueName};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn target() -> RedisTarget {
    RedisTarget::open(&redis_url()).unwrap()
}

/// A shared connection, as the services open it.
pub async fn conn() -> RedisConn {
    gpuq_queue::connect(&target())
        .await
        .expect("Redis must be running")
}

/// Short leases and backoffs so time-dependent behaviour runs in milliseconds.
pub fn fast_config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_millis(300),
        backoff: gpuq_queue::Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(400),
        },
        ..QueueConfig::default()
    }
}

pub async fn queue_with(config: QueueConfig) -> Queue {
    let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
    Queue::new(
        target(),
        conn().await,
        &namespace,
        QueueName::parse("sdxl_queue").unwrap(),
        config,
    )
}

pub async fn queue() -> Queue {
    queue_with(fast_config()).await
}

/// An envelope for `queue` padded with metadata to about `size` bytes of JSON.
pub fn envelope_sized(queue: &Queue, max_attempts: u32, size: usize) -> JobEnvelope {
    let spec = JobType::SdxlImageFast.spec();
    let mut env = JobEnvelope {
        job_id: JobId::new(),
        job_type: JobType::SdxlImageFast,
        queue: queue.name().to_string(),
        prompt: "a lighthouse at dusk".into(),
        negative_prompt: None,
        config: GenerationConfig {
            steps: spec.defaults.steps,
            guidance: spec.defaults.guidance,
            width: spec.defaults.width,
            height: spec.defaults.height,
            frames: 1,
            num_images: 1,
            seed: Some(42),
            reference_image: None,
            reference_strength: None,
            denoise_strength: None,
            exact_copy: false,
            enhance_prompt: false,
        },
        user_id: uuid::Uuid::new_v4().into(),
        bucket: "sdxl_image_fast".into(),
        model_variant: spec.model_variant.into(),
        attempt: 0,
        max_attempts,
        created_at: chrono::Utc::now(),
        metadata: serde_json::json!({}),
    };
    let base = serde_json::to_string(&env).unwrap().len();
    if size > base + 12 {
        env.metadata = serde_json::json!({ "pad": "x".repeat(size - base - 12) });
    }
    env
}

pub fn envelope(queue: &Queue, max_attempts: u32) -> JobEnvelope {
    envelope_sized(queue, max_attempts, 0)
}

/// Every key of this queue's namespace. On a cluster they all sit in the slot of the
/// queue's hash tag, so the node owning it is the one to scan.
pub async fn keys_of(queue: &Queue) -> Vec<String> {
    let prefix = queue.keys().prefix();
    let mut conn = conn().await;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(format!(
                "{}*",
                prefix.replace('{', "\\{").replace('}', "\\}")
            ))
            .arg("COUNT")
            .arg(1000);
        let (next, batch): (u64, Vec<String>) = match &mut conn {
            RedisConn::Single(c) => scan.query_async(c).await.unwrap(),
            RedisConn::Cluster(c) => {
                let owner = Route::with_key(prefix, SlotAddr::Master);
                let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(owner));
                redis::from_redis_value(c.route_command(scan, at).await.unwrap()).unwrap()
            }
        };
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}
