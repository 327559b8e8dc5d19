//! The whole system: the real dispatcher and callback service (in this process, on random
//! ports), SDK workers, real Redis and PostgreSQL. Every job type goes in through HTTP and
//! must come out completed with the right rows and files, through demo workers or, with no
//! GPU worker up, through the provider worker and a local stand-in for Replicate.

// The SDK suite's stand-in for Replicate; this test uses only part of it.
#[allow(dead_code)]
#[path = "sdk/fake_replicate.rs"]
mod fake_replicate;

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;

use gpuq_schemas::{JobKind, JobType};
use gpuq_service::configuration::Layered;
use gpuq_service::testkit::{fresh_database, namespace, redis_url, token_for, JWT_SECRET};
use gpuq_worker_sdk::demo::DemoHandler;
use gpuq_worker_sdk::LocalStorage;

const SECRET: &str = "e2e-callback-secret";

async fn start_dispatcher(db: &str, ns: &str) -> String {
    start_dispatcher_with(db, ns, |_| {}).await
}

async fn start_dispatcher_with(
    db: &str,
    ns: &str,
    customize: impl FnOnce(&mut gpuq_dispatcher::Settings),
) -> String {
    let mut s = gpuq_dispatcher::Settings::defaults().unwrap();
    s.application.port = 0;
    s.database.url = SecretString::from(db.to_owned());
    s.redis.url = SecretString::from(redis_url());
    s.redis.namespace = ns.into();
    s.auth.jwt_secret = Some(SecretString::from(JWT_SECRET));
    s.limits.max_active_jobs_per_user = 100;
    s.limits.requests_per_second = 100.0;
    s.limits.burst = 100;
    s.queue.max_depth = 1000;
    s.queue.lease_ms = 2000;
    s.queue.backoff_base_ms = 100;
    s.queue.backoff_max_ms = 1000;
    s.queue.maintenance_interval_ms = 100;
    customize(&mut s);
    let app = gpuq_dispatcher::Application::build(s).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

async fn start_callback(db: &str, ns: &str) -> String {
    let mut s = gpuq_callback::Settings::defaults().unwrap();
    s.application.host = "127.0.0.1".into();
    s.application.port = 0;
    s.database.url = SecretString::from(db.to_owned());
    s.database.migrate = true;
    s.redis.url = SecretString::from(redis_url());
    s.redis.namespace = ns.into();
    s.auth.secrets = vec![SecretString::from(SECRET)];
    let app = gpuq_callback::Application::build(s).await.unwrap();
    let url = format!("http://127.0.0.1:{}/v1/callback", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_type_goes_through_http_workers_and_callbacks_into_rows_and_files() {
    let ns = namespace();
    let db = fresh_database().await;
    let api = start_dispatcher(&db, &ns).await;
    let callback_url = start_callback(&db, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let mut stops = Vec::new();
    for queue in ["sdxl_queue", "wan_queue"] {
        let worker = gpuq_worker_sdk::Worker::builder()
            .redis_url(redis_url())
            .namespace(&ns)
            .queue(queue)
            .concurrency(4)
            .callback_url(callback_url.clone())
            .callback_secret(SECRET.to_string().into())
            .storage(LocalStorage::new(dir.path()))
            .handler(DemoHandler {
                time_scale: 0.0,
                loads: None,
            })
            .build()
            .unwrap();
        let stop = gpuq_worker_sdk::CancellationToken::new();
        let token = stop.clone();
        stops.push((stop, tokio::spawn(async move { worker.run(token).await })));
    }

    let user = uuid::Uuid::new_v4();
    let http = reqwest::Client::new();
    let mut jobs = Vec::new();
    for t in JobType::ALL {
        let images = if t == JobType::SdxlImageHigh { 3 } else { 1 };
        let body = json!({"jobType": t.as_str(), "metadata": {"prompt": format!("e2e {t}"), "num_images": images, "seed": 7}});
        let resp = http
            .post(format!("{api}/v1/jobs"))
            .bearer_auth(token_for(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "{t}");
        let answer: Value = resp.json().await.unwrap();
        jobs.push((t, images, answer["job"]["id"].as_str().unwrap().to_owned()));
    }

    let pool = PgPool::connect(&db).await.unwrap();
    for (t, images, id) in &jobs {
        let mut status = String::new();
        for _ in 0..300 {
            status = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1::uuid")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            if status != "queued" && status != "processing" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, "completed", "{t} {id}");
        let (table, expected) = match t.spec().kind {
            JobKind::Image => ("images", *images as i64),
            JobKind::Video => ("videos", 1),
        };
        let paths: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT bucket, storage_path FROM {table} WHERE job_id = $1::uuid"
        ))
        .bind(id)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(paths.len() as i64, expected, "{t}: rows in {table}");
        for (bucket, key) in paths {
            assert!(key.starts_with(&user.to_string()), "{key}");
            let file = dir.path().join(&bucket).join(&key);
            assert!(
                std::fs::metadata(&file).is_ok_and(|m| m.len() > 0),
                "{t}: missing {}",
                file.display()
            );
        }
        let resp: Value = http
            .get(format!("{api}/v1/jobs/{id}"))
            .bearer_auth(token_for(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp["job"]["status"], "completed");
    }
    for (stop, handle) in stops {
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_gpu_worker_a_job_falls_back_to_the_provider_and_its_outputs_are_recorded() {
    use gpuq_worker_sdk::provider::{ModelRef, PollInterval, ProviderHandler, ProviderModel};

    let ns = namespace();
    let db = fresh_database().await;
    let rule = serde_json::from_value(json!({"queue": "sdxl-replicate", "when_no_worker": true}));
    let api = start_dispatcher_with(&db, &ns, |s| {
        s.overflow.insert(JobType::SdxlImageHigh, rule.unwrap());
    })
    .await;
    let callback_url = start_callback(&db, &ns).await;
    let fake = fake_replicate::FakeReplicate::start().await;
    let dir = tempfile::tempdir().unwrap();
    let model = ProviderModel {
        model: ModelRef::parse("stability-ai/sdxl:39ed52f2").unwrap(),
        input: Default::default(),
    };
    let handler = ProviderHandler {
        client: gpuq_worker_sdk::provider::ReplicateClient::new(
            &fake.base_url,
            fake_replicate::TOKEN.to_string().into(),
            Duration::from_secs(5),
        )
        .unwrap(),
        models: [(JobType::SdxlImageHigh, model)].into_iter().collect(),
        poll: PollInterval {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        max_output_bytes: 1 << 20,
        max_throttled: Duration::from_secs(30),
        max_prediction: Duration::from_secs(30),
    };
    let worker = gpuq_worker_sdk::Worker::builder()
        .redis_url(redis_url())
        .namespace(&ns)
        .queue("sdxl-replicate")
        .callback_url(callback_url)
        .callback_secret(SECRET.to_string().into())
        .storage(LocalStorage::new(dir.path()))
        .handler(handler)
        .build()
        .unwrap();
    let stop = gpuq_worker_sdk::CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    // The provider worker's first claim makes it live (after its start-up probe, which a
    // loaded machine may take a while over): until then nothing routes to it.
    let consumers = gpuq_queue::Keys::new(&ns, &"sdxl-replicate".parse().unwrap())
        .consumers()
        .to_owned();
    // The queue's own connection: the suite also runs against a Redis Cluster.
    let target = gpuq_queue::RedisTarget::open(&redis_url()).unwrap();
    let mut conn = gpuq_queue::connect(&target).await.unwrap();
    let mut live = 0u64;
    for _ in 0..200 {
        live = redis::cmd("ZCARD")
            .arg(&consumers)
            .query_async(&mut conn)
            .await
            .unwrap();
        if live > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        live > 0,
        "the provider worker never claimed (not live after 10 s)"
    );
    // The dispatcher reads liveness through its 1 s stats cache, which its start-up pass may
    // have filled before the worker was live.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let user = uuid::Uuid::new_v4();
    let body = json!({"jobType": "sdxl_image_high", "metadata": {"prompt": "ok", "num_images": 3}});
    let answer: Value = reqwest::Client::new()
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(token_for(user))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["job"]["routed"], "no_live_worker", "{answer}");
    let id = answer["job"]["id"].as_str().unwrap().to_owned();
    let pool = PgPool::connect(&db).await.unwrap();
    let mut row: (String, String, Option<String>) = Default::default();
    for _ in 0..100 {
        row = sqlx::query_as("SELECT status, queue, routed FROM jobs WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
        if row.0 == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        row,
        (
            "completed".into(),
            "sdxl-replicate".into(),
            Some("no_live_worker".into())
        )
    );
    let images: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT bucket, storage_path, image_index FROM images WHERE job_id = $1::uuid ORDER BY image_index",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(images.len(), 3);
    for (bucket, key, index) in images {
        let stored = std::fs::read(dir.path().join(&bucket).join(&key)).unwrap();
        assert_eq!(
            stored,
            fake_replicate::output_png("pred0000", index as usize)
        );
    }
    assert_eq!(fake.creates().len(), 1);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}
