//! The S3 backend against a minimal S3-compatible endpoint served in the test.

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use gpuq_worker_sdk::{S3Config, S3Storage, Storage};

#[derive(Debug, Clone)]
struct Put {
    path: String,
    content_type: String,
    signed: bool,
    body: Vec<u8>,
}

type Puts = web::Data<Mutex<Vec<Put>>>;

async fn put(req: HttpRequest, body: web::Bytes, puts: Puts) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    puts.lock().unwrap().push(Put {
        path: req.path().to_owned(),
        content_type: header("content-type"),
        signed: header("authorization").starts_with("AWS4-HMAC-SHA256 Credential=test-key/"),
        body: body.to_vec(),
    });
    HttpResponse::Ok()
        .insert_header(("ETag", "\"0123\""))
        .finish()
}

async fn fake_s3() -> (String, Arc<Mutex<Vec<Put>>>) {
    let puts = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::from(Arc::clone(&puts));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::put().to(put))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), puts)
}

fn config(endpoint: String, bucket: Option<&str>) -> S3Config {
    S3Config {
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: "test-key".into(),
        secret_access_key: "test-secret".to_string().into(),
        bucket: bucket.map(str::to_owned),
        allow_http: true,
    }
}

#[tokio::test]
async fn s3_uploads_are_signed_path_style_puts_with_the_content_type() {
    let (endpoint, puts) = fake_s3().await;
    let s3 = S3Storage::new(config(endpoint, None)).unwrap();
    let reported = s3
        .put(
            "sdxl_image_fast",
            "u1/j1/0.png",
            Bytes::from_static(b"\x89PNG"),
            "image/png",
        )
        .await
        .unwrap();
    assert_eq!(
        reported, "u1/j1/0.png",
        "the bucket-relative key is reported"
    );
    let puts = puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, "/sdxl_image_fast/u1/j1/0.png");
    assert_eq!(puts[0].content_type, "image/png");
    assert!(puts[0].signed, "SigV4-signed");
    assert_eq!(puts[0].body, b"\x89PNG");
}

#[tokio::test]
async fn a_configured_bucket_overrides_the_jobs_bucket() {
    let (endpoint, puts) = fake_s3().await;
    let s3 = S3Storage::new(config(endpoint, Some("outputs"))).unwrap();
    s3.put(
        "video_fast",
        "u/j/0.gif",
        Bytes::from_static(b"GIF89a"),
        "image/gif",
    )
    .await
    .unwrap();
    assert_eq!(puts.lock().unwrap()[0].path, "/outputs/u/j/0.gif");
}
