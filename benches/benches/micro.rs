//! Criterion micro-benchmarks of the per-request CPU work on gpuq's hot paths: JWT checks
//! and enqueue validation (every `POST /v1/jobs`), callback signature checks, payload
//! parsing and storage-path normalization (every worker report), and envelope encoding
//! (every enqueue and claim). Run with `cargo bench -p gpuq-benches --bench micro`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secrecy::SecretString;
use serde_json::json;

use gpuq_callback::storage_path::StorageHost;
use gpuq_callback::{normalize, StorageRules};
use gpuq_dispatcher::auth::Authenticator;
use gpuq_dispatcher::configuration::AuthSettings;
use gpuq_dispatcher::validation::{validate, ReferencePolicy};
use gpuq_schemas::callback::ParsedCallback;
use gpuq_schemas::{signature, UserId};

const SECRET: &str = "micro-bench-secret-0123456789abcdef";

fn jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let auth = Authenticator::new(&AuthSettings {
        jwt_secret: Some(SecretString::from(SECRET)),
        jwks_url: None,
        audience: "authenticated".into(),
        admin_token: None,
        stream_token_secret: Some(SecretString::from("micro-bench-stream-key")),
        stream_token_ttl_secs: 3600,
        tenant_claim: None,
    });
    let claims = json!({"sub": uuid::Uuid::new_v4().to_string(), "aud": "authenticated", "exp": chrono::Utc::now().timestamp() + 3600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token");
    c.bench_function("authenticate HS256 bearer token", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(black_box(&token)).await.expect("valid") })
    });
}

fn enqueue_validation(c: &mut Criterion) {
    let user = UserId::from(uuid::Uuid::new_v4());
    let hosts = vec!["cdn.example.com".to_string()];
    let policy = ReferencePolicy {
        user,
        allowed_hosts: &hosts,
    };
    let simple = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a lighthouse at dusk, oil painting", "num_images": 3, "seed": 42}});
    let img2img = json!({"jobType": "image_high", "metadata": {"prompt": "the same, at night", "reference_image": format!("{user}/uploads/in.png"), "reference_strength": 0.6, "steps": 30}});
    let mut g = c.benchmark_group("validate");
    g.bench_function("text-to-image", |b| {
        b.iter(|| validate(black_box(&simple), &policy).expect("valid"))
    });
    g.bench_function("image-to-image", |b| {
        b.iter(|| validate(black_box(&img2img), &policy).expect("valid"))
    });
    g.finish();
}

fn callback(c: &mut Criterion) {
    let user = uuid::Uuid::new_v4();
    let job = uuid::Uuid::new_v4();
    let body = json!({"jobId": job, "status": "completed", "attempt": 1, "outputs": (0..3).map(|i| json!({"path": format!("{user}/{job}/{i}.png"), "seed": i, "width": 1024, "height": 1024})).collect::<Vec<_>>()}).to_string();
    let ts = chrono::Utc::now().timestamp();
    let sig = signature::sign(SECRET.as_bytes(), ts, body.as_bytes());
    let mut g = c.benchmark_group("callback");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("verify signature", |b| {
        b.iter(|| {
            signature::verify(
                &[SECRET],
                black_box(&ts.to_string()),
                black_box(&sig),
                black_box(body.as_bytes()),
                ts,
                300,
            )
            .expect("valid")
        })
    });
    g.bench_function("parse 3-image report", |b| {
        b.iter(|| ParsedCallback::from_slice(black_box(body.as_bytes())).expect("valid"))
    });
    g.finish();

    let rules = StorageRules::new(
        Some(StorageHost::parse("https://proj.supabase.co").expect("host")),
        vec!["sdxl_image_fast".into(), "user-library".into()],
    );
    let owner = UserId::from(user);
    let mut g = c.benchmark_group("storage path");
    for (name, path) in [
        ("relative key", format!("{user}/{job}/0.png")),
        (
            "public URL",
            format!("https://proj.supabase.co/storage/v1/object/public/sdxl_image_fast/{user}/{job}/0.png"),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| normalize(black_box(&path), owner, "sdxl_image_fast", &rules).expect("valid"))
        });
    }
    g.finish();
}

criterion_group!(benches, jwt, enqueue_validation, callback);
criterion_main!(benches);
