//! Hostile input against the real `gpuq-callback` binary, run as a child process so that
//! its memory can be read: a 100 MB body (declared and chunked), JSON nested 100,000 deep,
//! and 100 clients trickling one byte per second, in the request head or in the body. Each
//! is refused or cut off within seconds, and the process grows by less than [`RSS_BOUND_KIB`].
//! The measured figures are in docs/reliability.md (`cargo test -p gpuq-callback --test api
//! hostile -- --nocapture` prints them).

use std::time::Duration;

use futures_util::future::join_all;
use gpuq_schemas::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::helpers::SECRETS;
use gpuq_service::testkit::raw_http::{flood, head, trickle, Ending, Served};
use gpuq_service::testkit::{fresh_database, redis_url};

/// How much the process may grow over the whole test: far below what holding the 100 MB
/// body, or 256 KiB per trickling connection, would take.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// Every hostile exchange must be over by then (the deadlines below are 2 s).
const CUT_OFF: Duration = Duration::from_secs(30);
const MB_100: u64 = 100 * 1024 * 1024;
const CALLBACK: &str = "POST /v1/callback";

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

/// The signature headers for `body`.
fn signed(body: &[u8]) -> Vec<String> {
    let ts = chrono::Utc::now().timestamp();
    vec![
        format!("{TIMESTAMP_HEADER}: {ts}"),
        format!(
            "{SIGNATURE_HEADER}: {}",
            sign(SECRETS[0].as_bytes(), ts, body)
        ),
    ]
}

#[tokio::test]
async fn huge_deep_and_trickled_requests_are_cut_off_within_a_memory_bound() {
    let envs = [
        ("DATABASE_URL", fresh_database().await),
        ("REDIS_URL", redis_url()),
        (
            "GPUQ_REDIS_NAMESPACE",
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
        ("GPUQ_CALLBACK_SECRET", SECRETS[0].to_owned()),
        ("GPUQ_BODY_TIMEOUT_MS", "2000".to_owned()),
        ("GPUQ__APPLICATION__HEADER_TIMEOUT_MS", "2000".to_owned()),
    ];
    let served = Served::start(env!("CARGO_BIN_EXE_gpuq-callback"), &[], &envs).await;
    let addr = served.addr;
    let post = |len, headers: &[String]| head(CALLBACK, Some(len), headers);

    // Warm up: a signed report on an unknown job (404), through signature check, parser and
    // database, so that pools and caches exist before measuring.
    let report_body = br#"{"jobId":"00000000-0000-7000-8000-000000000000","status":"processing"}"#;
    let len = report_body.len() as u64;
    let e = flood(
        addr,
        &post(len, &signed(report_body)),
        report_body.to_vec(),
        len,
        CUT_OFF,
    )
    .await;
    assert_eq!(e.status, Some(404), "{}", e.response);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = served.rss_kib();

    // 100 MB with its length declared: 413 at once, before any of it is read.
    let e = flood(
        addr,
        &post(MB_100, &[]),
        vec![b'['; 64 * 1024],
        MB_100,
        CUT_OFF,
    )
    .await;
    report("100 MB, Content-Length", &e);
    assert_eq!(e.status, Some(413), "{}", e.response);
    assert!(e.after < Duration::from_secs(10), "{e:?}");

    // 100 MB chunked: 413 once 256 KiB arrived, and the connection ends.
    let chunked_head = head(CALLBACK, None, &["Transfer-Encoding: chunked".into()]);
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

    // JSON nested 100,000 deep, correctly signed: it fits the 256 KiB cap and is refused by
    // the parser's depth limit (400); unsigned it never reaches the parser (401); 300,000
    // deep is over the cap (413).
    let deep = [vec![b'['; 100_000], vec![b']'; 100_000]].concat();
    let len = deep.len() as u64;
    for (what, headers, status) in [("signed", signed(&deep), 400), ("unsigned", vec![], 401)] {
        let e = flood(addr, &post(len, &headers), deep.clone(), len, CUT_OFF).await;
        report(&format!("[ x 100,000 ({what})"), &e);
        assert_eq!(e.status, Some(status), "{}", e.response);
    }
    let e = flood(
        addr,
        &post(300_000, &[]),
        vec![b'['; 300_000],
        300_000,
        CUT_OFF,
    )
    .await;
    assert_eq!(e.status, Some(413), "{}", e.response);

    // 50 clients trickling their request head, 50 trickling a 1,000-byte body, 1 byte/s.
    let slow_head = b"POST /v1/callback HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
    let heads = (0..50).map(|_| {
        trickle(
            addr,
            b"",
            [slow_head.clone(), vec![b'a'; 60]].concat(),
            CUT_OFF,
        )
    });
    let body_head = post(1000, &[]);
    let bodies = (0..50).map(|_| {
        trickle(
            addr,
            body_head.as_bytes(),
            report_body.repeat(20)[..1000].to_vec(),
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
