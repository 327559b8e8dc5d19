//! A job's own webhook (`webhook`, `webhookEvents` on an enqueue): its events signed with
//! its tenant's key and filtered, its host (and port) checked against the allow-list, and
//! every bad one refused before anything is written.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, spawn_app_with, token_for, TestApp};
use crate::webhooks::Receiver;

const JOB_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn app(hosts: &[&str]) -> TestApp {
    spawn_app_with(|s| {
        s.webhooks.poll_interval_ms = 50;
        s.webhooks.retry_base_ms = 50;
        s.webhooks.retry_max_ms = 200;
        s.webhooks.timeout_ms = 300;
        s.webhooks.job_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        s.webhooks.job_secret = Some(JOB_SECRET.to_owned().into());
    })
    .await
}

fn with_hook(hook: Value) -> Value {
    let mut body = json!({ "jobType": "sdxl_image_fast", "metadata": { "prompt": "p" } });
    body.as_object_mut()
        .unwrap()
        .extend(hook.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn a_jobs_own_webhook_gets_the_events_it_named_signed_with_the_job_secret() {
    let receiver = Receiver::start([]).await;
    let authority = receiver
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/hooks");
    let app = app(&[authority]).await;
    let token = token_for(Uuid::new_v4());
    let body =
        with_hook(json!({"webhook": receiver.url, "webhookEvents": ["queued", "cancelled"]}));
    let res = app.post_job(&token, &body).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another job without a webhook: nothing of it reaches the receiver.
    app.enqueued(&token, "sdxl_image_fast").await;
    assert_eq!(app.cancel_job(&token, &id).await.status(), 200);

    let seen = receiver.wait_for_delivered(2).await;
    let key = |token: String| {
        let app = &app;
        async move {
            let answer: Value = app
                .http
                .get(app.url("/v1/webhooks/secret"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            standardwebhooks::Webhook::new(answer["secret"].as_str().unwrap()).unwrap()
        }
    };
    let hook = key(token.clone()).await;
    let other = key(token_for(Uuid::new_v4())).await;
    let shared = standardwebhooks::Webhook::new(JOB_SECRET).unwrap();
    let mut types = Vec::new();
    for s in &seen {
        hook.verify(&s.body, &s.headers)
            .expect("signed with the tenant's key");
        assert!(
            shared.verify(&s.body, &s.headers).is_err(),
            "not with the server's secret"
        );
        assert!(
            other.verify(&s.body, &s.headers).is_err(),
            "not with another tenant's key"
        );
        assert_eq!(s.json()["data"]["id"], id.as_str());
        types.push(s.json()["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(types, ["job.cancelled", "job.queued"]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 2, "nothing else was posted");
    let endpoints: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE endpoint_id IS NULL), count(*) FROM webhook_deliveries",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(endpoints, (2, 2));
}

#[tokio::test]
async fn a_bad_or_unwelcome_webhook_is_refused_and_nothing_is_written() {
    let app = app(&["hooks.example.com"]).await;
    let token = token_for(Uuid::new_v4());
    for (hook, code) in [
        (
            json!({"webhook": "https://hooks.example.com:6379/x"}),
            "webhook_host_not_allowed",
        ),
        (
            json!({"webhook": "https://evil.example.com/x"}),
            "webhook_host_not_allowed",
        ),
        (
            json!({"webhook": "https://hooks.example.com.evil.net/x"}),
            "webhook_host_not_allowed",
        ),
        (
            json!({"webhook": "ftp://hooks.example.com/x"}),
            "invalid_webhook",
        ),
        (json!({"webhook": "not a url"}), "invalid_webhook"),
        (
            json!({"webhook": ["https://hooks.example.com/x"]}),
            "invalid_webhook",
        ),
        (
            json!({"webhook": "https://hooks.example.com/\u{0}x"}),
            "invalid_webhook",
        ),
        (json!({"webhookEvents": ["completed"]}), "invalid_webhook"),
        (
            json!({"webhook": "https://hooks.example.com/x", "webhookEvents": ["finished"]}),
            "invalid_webhook_events",
        ),
        (
            json!({"webhook": "https://hooks.example.com/x", "webhookEvents": []}),
            "invalid_webhook_events",
        ),
    ] {
        let res = app.post_job(&token, &with_hook(hook.clone())).await;
        assert_error(res, 400, code).await;
    }
    // The v2 shape takes them too.
    let v2 = json!({"job_type": "sdxl_image_fast", "prompt": "p", "webhook": "https://evil.example.com/"});
    assert_error(
        app.post_job(&token, &v2).await,
        400,
        "webhook_host_not_allowed",
    )
    .await;
    assert_eq!(app.job_count().await, 0);
    let hooks: i64 = sqlx::query_scalar("SELECT count(*) FROM job_webhooks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(hooks, 0);
    // An allowed one is recorded with the default events.
    let ok = with_hook(json!({"webhook": "https://hooks.example.com/x"}));
    assert_eq!(app.post_job(&token, &ok).await.status(), 202);
    let events: Vec<String> = sqlx::query_scalar("SELECT events FROM job_webhooks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, ["completed", "failed", "cancelled"]);
}

#[tokio::test]
async fn a_server_without_a_job_secret_refuses_per_job_webhooks_and_leaves_them_out_of_its_schema()
{
    let app = spawn_app_with(|s| s.webhooks.job_hosts = vec!["hooks.example.com".into()]).await;
    let token = token_for(Uuid::new_v4());
    let res = app
        .post_job(
            &token,
            &with_hook(json!({"webhook": "https://hooks.example.com/x"})),
        )
        .await;
    let body = assert_error(res, 400, "invalid_webhook").await;
    assert!(body.to_string().contains("no per-job webhooks"), "{body}");
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!doc.to_string().contains("webhookEvents"));
    let key = app
        .http
        .get(app.url("/v1/webhooks/secret"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_error(key, 404, "not_found").await;
    let on = app_doc(&["hooks.example.com"]).await;
    assert!(on.to_string().contains("webhookEvents"));
}

async fn app_doc(hosts: &[&str]) -> Value {
    let app = app(hosts).await;
    app.http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
