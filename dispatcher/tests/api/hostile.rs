//! Hostile input against the real `gpuq-dispatcher` binary, run as a child process so that
//! its memory can be read: a 100 MB body (declared and chunked), JSON nested 100,000 deep,
//! and 100 clients trickling one byte per second, in the request head or in the body. Each
//! is refused or cut off within seconds, and the process grows by less than [`RSS_BOUND_KIB`].
//! The measured figures are in docs/reliability.md (`cargo test -p gpuq-dispatcher --test
//! api hostile -- --nocapture` prints them).

use std::time::Duration;

use futures_util::future::join_all;
use uuid::Uuid;

use crate::helpers::{fresh_database, redis_url, token_for, JWT_SECRET};
use gpuq_service::testkit::raw_http::{flood, head, trickle, Ending, Served};

/// How much the process may grow over the whole test: far below what holding the 100 MB
/// body, or 64 KiB per trickling connection, would take.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// Every hostile exchange must be over by then (the deadlines below are 2 s).
const CUT_OFF: Duration = Duration::from_secs(30);
const MB_100: u64 = 100 * 1024 * 1024;

fn chunked(payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("{:x}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

fn report(what: &str, e: &Ending) {
    eprintln!(
        "{what}: {:?} after {:.2} s, connection closed after {:.2} s, {} body bytes sent",
        e.status,
        e.answered.unwrap_or_default().as_secs_f64(),
        e.after.as_secs_f64(),
        e.sent
    );
}

#[tokio::test]
async fn huge_deep_and_trickled_requests_are_cut_off_within_a_memory_bound() {
    let envs = [
        ("DATABASE_URL", fresh_database().await),
        ("REDIS_URL", redis_url()),
        (
            "GPUQ_REDIS_NAMESPACE",
            format!("test-{}", Uuid::new_v4().simple()),
        ),
        ("GPUQ_JWT_SECRET", JWT_SECRET.to_owned()),
        ("GPUQ_BODY_TIMEOUT_MS", "2000".to_owned()),
        ("GPUQ__APPLICATION__HEADER_TIMEOUT_MS", "2000".to_owned()),
    ];
    let served = Served::start(env!("CARGO_BIN_EXE_gpuq-dispatcher"), &["serve"], &envs).await;
    let addr = served.addr;
    let auth = format!("Authorization: Bearer {}", token_for(Uuid::new_v4()));

    // Warm up: one accepted job, so that pools, scripts and caches exist before measuring.
    let job = br#"{"jobType":"sdxl_image_fast","metadata":{"prompt":"a lighthouse"}}"#;
    let enqueue = |len| head("POST /v1/jobs", Some(len), std::slice::from_ref(&auth));
    let ok = flood(
        addr,
        &enqueue(job.len() as u64),
        job.to_vec(),
        job.len() as u64,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(ok.status, Some(202), "{}", ok.response);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = served.rss_kib();

    // 100 MB with its length declared: 413 at once, before any of it is read.
    let e = flood(
        addr,
        &enqueue(MB_100),
        vec![b'['; 64 * 1024],
        MB_100,
        CUT_OFF,
    )
    .await;
    report("100 MB, Content-Length", &e);
    assert_eq!(e.status, Some(413), "{}", e.response);
    assert!(e.response.contains("payload_too_large"), "{}", e.response);
    assert!(e.after < Duration::from_secs(10), "{e:?}");

    // 100 MB chunked (no declared length): 413 once 64 KiB arrived, and the connection ends.
    let chunked_head = head(
        "POST /v1/jobs",
        None,
        &[auth.clone(), "Transfer-Encoding: chunked".into()],
    );
    let e = flood(
        addr,
        &chunked_head,
        chunked(&[b'['; 64 * 1024]),
        MB_100,
        CUT_OFF,
    )
    .await;
    report("100 MB, chunked", &e);
    assert_eq!(e.status, Some(413), "{}", e.response);
    assert!(e.after < Duration::from_secs(10), "{e:?}");

    // JSON nested 100,000 deep is over the size cap (413); 60,000 deep fits and is refused
    // by the parser's depth limit (400).
    for (depth, status) in [(100_000u64, 413), (60_000, 400)] {
        let e = flood(
            addr,
            &enqueue(depth),
            vec![b'['; depth as usize],
            depth,
            CUT_OFF,
        )
        .await;
        report(&format!("[ x {depth}"), &e);
        assert_eq!(e.status, Some(status), "{}", e.response);
    }

    // 50 clients trickling their request head, 50 trickling a 1,000-byte body, 1 byte/s.
    let slow_head = b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
    let heads = (0..50).map(|_| {
        trickle(
            addr,
            b"",
            [slow_head.clone(), vec![b'a'; 60]].concat(),
            CUT_OFF,
        )
    });
    let body_head = enqueue(1000);
    let bodies = (0..50).map(|_| {
        trickle(
            addr,
            body_head.as_bytes(),
            job.repeat(20)[..1000].to_vec(),
            CUT_OFF,
        )
    });
    let (heads, bodies) = tokio::join!(join_all(heads), join_all(bodies));
    for (what, endings) in [("heads", &heads), ("bodies", &bodies)] {
        let slowest = endings.iter().map(|e| e.after).max().unwrap_or_default();
        let answered = endings.iter().filter_map(|e| e.answered).max();
        eprintln!(
            "50 trickled {what}: slowest answer after {:.2} s, slowest close after {:.2} s",
            answered.unwrap_or_default().as_secs_f64(),
            slowest.as_secs_f64()
        );
        for e in endings.iter() {
            assert!(e.after < CUT_OFF, "{what} not cut off: {e:?}");
            assert!(matches!(e.status, None | Some(408)), "{what}: {e:?}");
        }
    }
    assert!(
        bodies
            .iter()
            .all(|e| e.response.contains("request_timeout")),
        "{:?}",
        bodies[0]
    );

    let after = served.rss_kib();
    eprintln!(
        "RSS before {before} KiB, after {after} KiB, growth {} KiB (bound {RSS_BOUND_KIB} KiB)",
        after.saturating_sub(before)
    );
    assert!(after.saturating_sub(before) < RSS_BOUND_KIB);
}

#[tokio::test]
async fn a_token_in_a_query_string_never_reaches_the_request_log() {
    let envs = [
        ("DATABASE_URL", fresh_database().await),
        ("REDIS_URL", redis_url()),
        (
            "GPUQ_REDIS_NAMESPACE",
            format!("test-{}", Uuid::new_v4().simple()),
        ),
        ("GPUQ_JWT_SECRET", JWT_SECRET.to_owned()),
    ];
    let served = Served::start(env!("CARGO_BIN_EXE_gpuq-dispatcher"), &["serve"], &envs).await;
    let token = token_for(Uuid::new_v4());
    let url = format!(
        "http://{}/v1/jobs/{}?access_token={token}&token={token}",
        served.addr,
        Uuid::new_v4()
    );
    let res = reqwest::get(&url).await.unwrap();
    assert!(res.status().is_client_error());
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut logged = Vec::new();
    for _ in 0..50 {
        logged = served.logs.lock().unwrap().clone();
        if logged.iter().any(|l| l.contains(&request_id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = logged
        .iter()
        .find(|l| l.contains(&request_id))
        .expect("the request was logged");
    assert!(
        line.contains("access_token=REDACTED&token=REDACTED"),
        "{line}"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !logged.iter().any(|l| l.contains(signature)),
        "a log line holds the token"
    );
}

/// A private redis-server, so its client count is the dispatcher's alone.
async fn private_redis() -> (tokio::process::Child, String) {
    let (child, port) = gpuq_service::testkit::private_redis().await;
    (child, format!("redis://127.0.0.1:{port}"))
}

async fn redis_clients(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// This process' soft limit of open files (`/proc/self/limits`).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

#[tokio::test]
async fn fifteen_hundred_event_streams_share_one_redis_subscription() {
    // 1,500 sockets here and 1,500 in the dispatcher: fewer where the limit is lower.
    let streams = 1500.min(open_files_limit().saturating_sub(200));
    let (_redis, redis_url) = private_redis().await;
    let envs = [
        ("DATABASE_URL", fresh_database().await),
        ("REDIS_URL", redis_url.clone()),
        ("GPUQ_JWT_SECRET", JWT_SECRET.to_owned()),
        ("GPUQ__LIMITS__MAX_STREAMS_PER_USER", streams.to_string()),
        ("GPUQ__LIMITS__MAX_STREAMS", streams.to_string()),
    ];
    let served = Served::start(env!("CARGO_BIN_EXE_gpuq-dispatcher"), &["serve"], &envs).await;
    let owner = Uuid::new_v4();
    let token = token_for(owner);
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("http://{}/v1/jobs", served.addr))
        .bearer_auth(&token)
        .json(&serde_json::json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["job"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = (redis_clients(&redis_url).await, served.rss_kib());
    let auth = format!("Authorization: Bearer {token}");
    let request = head(
        &format!("GET /v1/jobs/{id}/events"),
        None,
        std::slice::from_ref(&auth),
    );
    let mut open = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut socket = tokio::net::TcpStream::connect(served.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut socket, request.as_bytes())
            .await
            .unwrap();
        open.push(socket);
    }
    // Every stream answered its first event (queued).
    for socket in &mut open {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(socket, &mut buf),
        )
        .await
        .expect("the stream answers")
        .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let during = (redis_clients(&redis_url).await, served.rss_kib());
    eprintln!(
        "{streams} streams: Redis clients {} -> {}, dispatcher RSS {} -> {} KiB ({:.1} KiB per stream)",
        before.0,
        during.0,
        before.1,
        during.1,
        (during.1.saturating_sub(before.1)) as f64 / streams as f64
    );
    assert!(
        during.0 <= before.0 + 2,
        "streams opened Redis connections: {} -> {}",
        before.0,
        during.0
    );
}
