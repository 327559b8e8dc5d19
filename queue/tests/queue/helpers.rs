//! Test helpers: a queue in its own random namespace on the real Redis (a single node, or
//! a cluster when `REDIS_URL` is a `redis+cluster://` URL).

use std::time::Duration;

use gpuq_queue::{ConsumerName, Queue, QueueConfig, RedisConn, RedisTarget};
use gpuq_schemas::{JobEnvelope, JobType, QueueName};
use gpuq_service::testkit::envelope as kit;
pub use gpuq_service::testkit::private_redis;
use gpuq_service::testkit::{namespace, redis_url};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

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
    let namespace = namespace();
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

/// An SDXL envelope for `queue` padded with metadata to about `size` bytes of JSON.
pub fn envelope_sized(queue: &Queue, max_attempts: u32, size: usize) -> JobEnvelope {
    let mut env = kit::envelope(JobType::SdxlImageFast);
    env.queue = queue.name().to_string();
    env.max_attempts = max_attempts;
    kit::padded(env, size)
}

pub fn envelope(queue: &Queue, max_attempts: u32) -> JobEnvelope {
    envelope_sized(queue, max_attempts, 0)
}

/// The keys of this queue that hold jobs: [`keys_of`] without the queue's own bookkeeping
/// (live consumers and their slots, wake-up tokens, virtual times, tenants' finish tags).
pub async fn job_keys_of(queue: &Queue) -> Vec<String> {
    const BOOKKEEPING: [&str; 6] = [
        ":consumers",
        ":slots",
        ":signal",
        ":vtime",
        ":finish:high",
        ":finish:normal",
    ];
    keys_of(queue)
        .await
        .into_iter()
        .filter(|k| !BOOKKEEPING.iter().any(|b| k.ends_with(b)))
        .collect()
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

/// A unique consumer name starting with `n`.
pub fn consumer(n: &str) -> ConsumerName {
    ConsumerName::unique(n)
}

/// A queue (default configuration) on the Redis at `url`.
pub async fn queue_at(url: &str) -> Queue {
    let target = RedisTarget::open(url).unwrap();
    let conn = gpuq_queue::connect(&target).await.unwrap();
    Queue::new(
        target,
        conn,
        "lib",
        QueueName::parse("sdxl_queue").unwrap(),
        QueueConfig::default(),
    )
}

/// The gpuq libraries loaded in the Redis on `port`.
pub async fn libraries(port: u16) -> Vec<String> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    format!("{list:?}")
        .split('"')
        .filter(|s| s.starts_with("gpuq_"))
        .map(str::to_owned)
        .collect()
}

/// `claim_jobs.lua` as a worker in another language sends it (`EVAL` of the prelude and the
/// script, docs/protocol.md), with its keys declared: add the arguments and invoke.
pub fn raw_claim(queue: &Queue) -> redis::ScriptInvocation<'static> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(&format!(
            "{}{}",
            include_str!("../../lua/prelude.lua"),
            include_str!("../../lua/claim_jobs.lua")
        ))
    });
    let k = queue.keys();
    let mut call = SCRIPT.key(&k.lanes()[..]);
    call.key(k.jobs())
        .key(k.meta())
        .key(k.leases())
        .key(k.consumers())
        .key(k.signal())
        .key(k.slots());
    call
}
