use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

/// Reads SSE frames until the stream ends or `max` data frames arrived.
async fn read_frames(resp: reqwest::Response, max: usize) -> Vec<(String, Value)> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while frames.len() < max {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or_default()
                .to_owned();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                frames.push((id, serde_json::from_str(data).unwrap()));
            }
        }
    }
    frames
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
