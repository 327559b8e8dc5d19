use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

/// One SSE frame: its id (empty for none), event type and data.
#[derive(Debug)]
struct Frame {
    id: String,
    kind: String,
    data: Value,
}

/// Reads SSE frames until `done` says so, the stream ends, or 15 s.
async fn read_sse(resp: reqwest::Response, done: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&frames) {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name));
            if let Some(data) = field("data: ") {
                frames.push(Frame {
                    id: field("id: ").unwrap_or_default().to_owned(),
                    kind: field("event: ").unwrap_or_default().to_owned(),
                    data: serde_json::from_str(data).unwrap(),
                });
            }
        }
    }
    frames
}

/// The job's own events (status and progress: not its place in the queue) as (id, data),
/// until the stream ends or `max` arrived.
async fn read_frames(resp: reqwest::Response, max: usize) -> Vec<(String, Value)> {
    let own = |f: &&Frame| f.kind != "position";
    read_sse(resp, |f| f.iter().filter(own).count() >= max)
        .await
        .into_iter()
        .filter(|f| own(&f))
        .map(|f| (f.id, f.data))
        .collect()
}

#[tokio::test]
async fn events_stream_status_changes_and_close_after_the_terminal_one() {
    let app = spawn_app().await;
    let owner = Uuid::new_v4();
    let token = token_for(owner);
    let body: Value = app
        .post_job(&token, &job_body("sdxl_image_fast", "x"))
        .await
        .json()
        .await
        .unwrap();
    let id = body["job"]["id"].as_str().unwrap().to_owned();

    let other = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(token_for(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_error(other, 404, "not_found").await;

    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let reader = tokio::spawn(read_frames(resp, 10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.cancel_job(&token, &id).await;
    let frames = reader.await.unwrap();
    let statuses: Vec<_> = frames
        .iter()
        .map(|(_, e)| e["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["queued", "cancelled"],
        "and the stream closed after the terminal event"
    );

    // Resuming after the first event yields only what came after it.
    let resumed = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&token)
        .header("Last-Event-ID", &frames[0].0)
        .send()
        .await
        .unwrap();
    let rest = read_frames(resumed, 10).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1["status"], "cancelled");
}

async fn open(app: &TestApp, token: &str, id: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(token);
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_stream_resumed_after_its_terminal_event_answers_204_so_event_source_stops() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let id = app.enqueued(&token, "sdxl_image_fast").await.to_string();
    app.cancel_job(&token, &id).await;
    let frames = read_frames(open(&app, &token, &id, None).await, 10).await;
    let last = &frames.last().unwrap().0;
    assert_eq!(frames.last().unwrap().1["status"], "cancelled");
    // What a browser's EventSource does after the stream closed: reconnect with the last id.
    for _ in 0..3 {
        let again = open(&app, &token, &id, Some(last)).await;
        assert_eq!(again.status().as_u16(), 204);
    }
}

#[tokio::test]
async fn a_last_event_id_ahead_of_the_stream_starts_from_the_beginning() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let id = app.enqueued(&token, "sdxl_image_fast").await.to_string();
    let ahead = format!("{}-0", u64::MAX / 2);
    let resp = open(&app, &token, &id, Some(&ahead)).await;
    assert_eq!(resp.status().as_u16(), 200);
    // It is not left waiting: the stream's first event (queued) comes at once.
    let frames = read_frames(resp, 1).await;
    assert_eq!(frames[0].1["status"], "queued");
}

#[tokio::test]
async fn open_streams_are_bounded_per_user_and_a_closed_one_frees_its_slot() {
    let app = spawn_app_with(|s| {
        s.limits.max_streams_per_user = 2;
        s.limits.max_streams = 3;
    })
    .await;
    let (alice, bob, carol) = (
        token_for(Uuid::new_v4()),
        token_for(Uuid::new_v4()),
        token_for(Uuid::new_v4()),
    );
    let job = app.enqueued(&alice, "sdxl_image_fast").await.to_string();
    let first = open(&app, &alice, &job, None).await;
    let _second = open(&app, &alice, &job, None).await;
    let third = open(&app, &alice, &job, None).await;
    assert_eq!(third.status().as_u16(), 429);
    let answer: Value = third.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "too_many_streams");

    let bobs = app.enqueued(&bob, "sdxl_image_fast").await.to_string();
    let _bob1 = open(&app, &bob, &bobs, None).await;
    let carols = app.enqueued(&carol, "sdxl_image_fast").await.to_string();
    assert_eq!(
        open(&app, &carol, &carols, None).await.status().as_u16(),
        429,
        "the instance's total is reached"
    );
    // A client that goes away gives its slot back once its stream notices.
    drop(first);
    let mut freed = false;
    for _ in 0..160 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let res = open(&app, &carol, &carols, None).await;
        if res.status().as_u16() == 200 {
            freed = true;
            break;
        }
    }
    assert!(freed, "the closed stream's slot was given back");
}

#[tokio::test]
async fn a_finished_job_whose_stream_is_gone_sends_its_terminal_event_once_then_204() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let id = app.enqueued(&token, "sdxl_image_fast").await.to_string();
    app.cancel_job(&token, &id).await;
    // The stream expired (or its terminal publish failed after the commit).
    let key = gpuq_queue::events_key(&app.settings.redis.namespace, id.parse().unwrap());
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let frames = read_frames(open(&app, &token, &id, None).await, 10).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].0.as_str(), frames[0].1["status"].as_str()),
        ("0-1", Some("cancelled"))
    );
    // The EventSource reconnects with that id: nothing more will come.
    let again = open(&app, &token, &id, Some("0-1")).await;
    assert_eq!(again.status().as_u16(), 204);
}

#[tokio::test]
async fn a_waiting_job_s_stream_tells_its_position_when_it_moves_by_a_step_worth_telling() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let mut last = String::new();
    for _ in 0..8 {
        last = app.enqueued(&token, "sdxl_image_fast").await.to_string();
    }
    let resp = open(&app, &token, &last, None).await;
    let positions = |frames: &[Frame]| -> Vec<u64> {
        frames
            .iter()
            .filter(|f| f.kind == "position")
            .map(|f| f.data["position"].as_u64().unwrap())
            .collect()
    };
    let reader = tokio::spawn(read_sse(resp, move |f| positions(f).last() == Some(&1)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Six of the seven jobs ahead start and finish; one place at a time would be six events.
    let q = app.queue("sdxl_queue").await;
    let gpu = gpuq_queue::ConsumerName::unique("gpu");
    for _ in 0..6 {
        let job = q.claim(&gpu, 1).await.unwrap().pop().unwrap();
        q.ack(job.id, Some(&gpu)).await.unwrap();
    }
    let frames = reader.await.unwrap();
    let told = positions(&frames);
    assert_eq!(
        (told.first(), told.last()),
        (Some(&7), Some(&1)),
        "{frames:?}"
    );
    assert!(
        told.len() <= 3,
        "a step worth telling, not every place: {told:?}"
    );
    let first = frames.iter().find(|f| f.kind == "position").unwrap();
    assert_eq!(first.data["jobId"], last.as_str());
    assert!(first.data["etaSeconds"].as_u64().is_some());
    assert!(first.id.is_empty(), "no id: a resumed stream is unaffected");
    assert_eq!(frames[0].kind, "status", "the status comes first");
}
