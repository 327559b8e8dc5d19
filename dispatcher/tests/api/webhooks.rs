//! Webhooks: the outbox written with the state change, the signed delivery checked by the
//! Standard Webhooks reference library, retries against a receiver that fails, times out
//! and recovers, filters, throttling, replay, auto-disable, and the admin API's refusals.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, spawn_app_with, token_for, TestApp, ADMIN_TOKEN};

/// What the receiver does with its next request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    Status(u16),
    /// Answers only after this long (longer than the sender's timeout: a timeout).
    Hang(Duration),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
    reply: Reply,
}

impl Seen {
    pub(crate) fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    /// A receiver on a free port: answers 200 unless `script` says otherwise.
    pub(crate) async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let mut r = Receiver::default();
        r.script.lock().unwrap().extend(script);
        let shared = r.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(receive))
        })
        .workers(2)
        .bind(("127.0.0.1", 0))
        .unwrap();
        r.url = format!("http://{}/hooks", server.addrs()[0]);
        tokio::spawn(server.run());
        r
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the receiver has answered 2xx to `n` requests.
    pub(crate) async fn wait_for_delivered(&self, n: usize) -> Vec<Seen> {
        for _ in 0..300 {
            let ok: Vec<Seen> = self
                .seen()
                .into_iter()
                .filter(|s| matches!(s.reply, Reply::Status(200..=299)))
                .collect();
            if ok.len() >= n {
                return ok;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} deliveries: {:?}", self.seen());
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, r: web::Data<Receiver>) -> HttpResponse {
    let reply = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in req.headers() {
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    r.seen.lock().unwrap().push(Seen {
        headers,
        body: body.to_vec(),
        reply,
    });
    match reply {
        Reply::Status(code) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).finish()
        }
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            HttpResponse::Ok().finish()
        }
    }
}

/// An app whose sender polls often and retries fast.
async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.webhooks.poll_interval_ms = 50;
        s.webhooks.retry_base_ms = 50;
        s.webhooks.retry_max_ms = 200;
        s.webhooks.timeout_ms = 300;
    })
    .await
}

impl TestApp {
    /// Registers an endpoint (it must be accepted); its id and secret.
    async fn endpoint(&self, body: Value) -> (i64, String) {
        let resp = self
            .admin_send(reqwest::Method::POST, "/admin/webhooks", Some(body))
            .await;
        assert_eq!(resp.status(), 201);
        let answer: Value = resp.json().await.unwrap();
        (
            answer["endpoint"]["id"].as_i64().unwrap(),
            answer["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    async fn deliveries(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = $1")
            .bind(status)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_job_event_is_delivered_signed_and_verifies_with_the_reference_library() {
    let app = app().await;
    let receiver = Receiver::start([]).await;
    let (_, secret) = app
        .endpoint(json!({"url": receiver.url, "events": ["queued", "cancelled"]}))
        .await;
    let token = token_for(Uuid::new_v4());
    let job = app.enqueued(&token, "sdxl_image_fast").await;
    app.cancel_job(&token, &job.to_string()).await;

    let seen = receiver.wait_for_delivered(2).await;
    let hook = standardwebhooks::Webhook::new(&secret).unwrap();
    for s in &seen {
        hook.verify(&s.body, &s.headers)
            .expect("the signature verifies");
        assert_eq!(s.json()["data"]["id"], job.to_string());
    }
    // Two events, posted concurrently: in either order.
    let mut types: Vec<String> = seen
        .iter()
        .map(|s| s.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["job.cancelled", "job.queued"]);
    let cancelled = seen
        .iter()
        .find(|s| s.json()["type"] == "job.cancelled")
        .unwrap();
    assert_eq!(cancelled.json()["data"]["status"], "cancelled");
    assert_ne!(seen[0].id(), seen[1].id());
    // Another key does not verify it.
    let other = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert!(other.verify(&seen[0].body, &seen[0].headers).is_err());
}

#[tokio::test]
async fn a_receiver_that_fails_then_times_out_then_recovers_gets_every_event_exactly_once_per_id() {
    let app = app().await;
    // Down: six 500s, then three answers too slow for the 300 ms timeout, then up.
    let mut script = vec![Reply::Status(500); 6];
    script.extend([Reply::Hang(Duration::from_millis(800)); 3]);
    let receiver = Receiver::start(script).await;
    app.endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    let token = token_for(Uuid::new_v4());
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(app.enqueued(&token, "sdxl_image_fast").await.to_string());
    }

    let delivered = receiver.wait_for_delivered(4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = receiver.seen();
    let mut answered_ok: HashMap<String, usize> = HashMap::new();
    for s in all.iter().filter(|s| matches!(s.reply, Reply::Status(200))) {
        *answered_ok.entry(s.id()).or_default() += 1;
    }
    assert_eq!(answered_ok.len(), 4, "one id per event");
    assert!(
        answered_ok.values().all(|n| *n == 1),
        "no id acknowledged twice: {answered_ok:?}"
    );
    let mut ids_of_jobs: Vec<String> = delivered
        .iter()
        .map(|s| s.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids_of_jobs.sort();
    jobs.sort();
    assert_eq!(ids_of_jobs, jobs);
    // Every attempt of an event carried its id: the failed ones are among the four.
    assert!(all.iter().all(|s| answered_ok.contains_key(&s.id())));
    assert_eq!(all.len(), 4 + 9, "each failure was retried, nothing more");
    assert_eq!(app.deliveries("delivered").await, 4);
    let log: Vec<(Option<i32>, Option<String>)> =
        sqlx::query_as("SELECT status_code, error FROM webhook_attempts ORDER BY at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(log.iter().filter(|(s, _)| *s == Some(500)).count(), 6);
    assert!(log.iter().any(|(_, e)| e
        .as_deref()
        .is_some_and(|e| e.contains("no answer within 300 ms"))));
}

#[tokio::test]
async fn events_written_while_no_sender_runs_are_delivered_by_the_next_one() {
    // A dispatcher that died after committing (its sender off here) loses nothing: the
    // events are rows, and any sender delivers them.
    let stopped = spawn_app_with(|s| s.webhooks.enabled = false).await;
    let receiver = Receiver::start([]).await;
    stopped
        .endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    let token = token_for(Uuid::new_v4());
    for _ in 0..3 {
        stopped.enqueued(&token, "sdxl_image_fast").await;
    }
    assert_eq!(stopped.deliveries("pending").await, 3);

    let mut settings = stopped.settings.clone();
    settings.webhooks.enabled = true;
    settings.webhooks.poll_interval_ms = 50;
    let sender =
        gpuq_dispatcher::webhooks::sender::Sender::new(stopped.db.clone(), settings.webhooks, None)
            .unwrap();
    assert_eq!(sender.round().await.unwrap(), 3);
    assert_eq!(receiver.wait_for_delivered(3).await.len(), 3);
    assert_eq!(stopped.deliveries("delivered").await, 3);
}

#[tokio::test]
async fn an_endpoint_gets_only_its_events_and_its_tenants_jobs() {
    let app = app().await;
    let user = Uuid::new_v4();
    let receiver = Receiver::start([]).await;
    app.endpoint(json!({"url": receiver.url, "events": ["cancelled"], "tenant": user.to_string()}))
        .await;
    let mine = token_for(user);
    let other = token_for(Uuid::new_v4());
    let a = app.enqueued(&mine, "sdxl_image_fast").await;
    let b = app.enqueued(&other, "sdxl_image_fast").await;
    app.cancel_job(&mine, &a.to_string()).await;
    app.cancel_job(&other, &b.to_string()).await;
    let seen = receiver.wait_for_delivered(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        receiver.seen().len(),
        1,
        "no queued events, nothing of the other tenant"
    );
    assert_eq!(seen[0].json()["data"]["id"], a.to_string());
}

#[tokio::test]
async fn progress_events_are_throttled_per_job_and_endpoint() {
    let app = spawn_app_with(|s| s.webhooks.enabled = false).await;
    let receiver = Receiver::start([]).await;
    app.endpoint(json!({"url": receiver.url, "events": ["progress"]}))
        .await;
    let job = app
        .enqueued(&token_for(Uuid::new_v4()), "sdxl_image_fast")
        .await;
    let progress = |fraction: f64| {
        sqlx::query_scalar::<_, i32>(
            "SELECT gpuq_webhook_progress($1, $2, 'denoising', interval '1 hour')",
        )
        .bind(job.as_uuid())
        .bind(fraction)
        .fetch_one(&app.db)
    };
    assert_eq!(
        progress(0.1).await.unwrap(),
        0,
        "a queued job reports no progress"
    );
    sqlx::query("UPDATE jobs SET status = 'processing', started_at = now() WHERE id = $1")
        .bind(job.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(progress(0.2).await.unwrap(), 1);
    assert_eq!(progress(0.3).await.unwrap(), 0, "within the interval");
    let body: Value =
        sqlx::query_scalar("SELECT payload FROM webhook_deliveries WHERE event = 'progress'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(body["data"]["progress"], 0.2);
    assert_eq!(body["data"]["message"], "denoising");
}

#[tokio::test]
async fn a_given_up_delivery_is_replayed_with_the_same_id() {
    let app = spawn_app_with(|s| {
        s.webhooks.poll_interval_ms = 50;
        s.webhooks.retry_base_ms = 50;
        s.webhooks.retry_max_ms = 100;
        s.webhooks.retry_for_secs = 1;
    })
    .await;
    let receiver = Receiver::start([Reply::Status(503); 200]).await;
    let (id, _) = app
        .endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    app.enqueued(&token_for(Uuid::new_v4()), "sdxl_image_fast")
        .await;
    for _ in 0..100 {
        if app.deliveries("failed").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.deliveries("failed").await,
        1,
        "given up after the retry window"
    );
    let failed = app
        .admin_get(&format!("/admin/webhooks/{id}/deliveries?status=failed"))
        .await;
    let failed: Value = failed.json().await.unwrap();
    let delivery = failed["deliveries"][0]["id"].as_str().unwrap().to_owned();
    assert!(failed["deliveries"][0]["log"].as_array().unwrap().len() >= 2);
    assert_eq!(failed["deliveries"][0]["lastStatus"], 503);

    receiver.script.lock().unwrap().clear();
    let replay = app
        .admin_send(
            reqwest::Method::POST,
            &format!("/admin/webhooks/{id}/replay"),
            Some(json!({})),
        )
        .await;
    assert_eq!(replay.json::<Value>().await.unwrap()["replayed"], 1);
    let ok = receiver.wait_for_delivered(1).await;
    assert_eq!(ok[0].id(), delivery);
    assert_eq!(app.deliveries("delivered").await, 1);
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled_and_an_admin_enables_it_again() {
    let app = spawn_app_with(|s| {
        s.webhooks.poll_interval_ms = 50;
        s.webhooks.retry_base_ms = 50;
        s.webhooks.retry_max_ms = 100;
        s.webhooks.disable_after_secs = 1;
    })
    .await;
    let receiver = Receiver::start([Reply::Status(500); 500]).await;
    let (id, _) = app
        .endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    app.enqueued(&token_for(Uuid::new_v4()), "sdxl_image_fast")
        .await;
    let mut endpoint = Value::Null;
    for _ in 0..100 {
        endpoint = app
            .admin_get(&format!("/admin/webhooks/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if endpoint["endpoint"]["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(endpoint["endpoint"]["enabled"], false, "{endpoint}");
    assert!(endpoint["endpoint"]["disabledReason"]
        .as_str()
        .unwrap()
        .contains("failed since"));
    assert_eq!(
        endpoint["endpoint"]["pending"], 1,
        "its delivery waits, not lost"
    );
    let tries = receiver.seen().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.seen().len(),
        tries,
        "nothing is posted to a disabled endpoint"
    );

    receiver.script.lock().unwrap().clear();
    let enabled = app
        .admin_send(
            reqwest::Method::PATCH,
            &format!("/admin/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status(), 200);
    receiver.wait_for_delivered(1).await;
}

#[tokio::test]
async fn bad_endpoint_bodies_are_refused_and_write_nothing() {
    let app = spawn_app_with(|s| s.webhooks.enabled = false).await;
    for body in [
        json!({"url": "ftp://example.com/x", "events": ["queued"]}),
        json!({"url": "https://example.com/x", "events": []}),
        json!({"url": "https://example.com/x", "events": ["queued"], "description": "nul\u{0}"}),
        json!({"url": "https://example.com/x", "events": ["queued"], "secret": "whsec_short"}),
        json!({"url": "https://example.com/x", "events": ["queued"], "extra": 1}),
        json!("https://example.com/x"),
    ] {
        let resp = app
            .admin_send(reqwest::Method::POST, "/admin/webhooks", Some(body.clone()))
            .await;
        assert_error(resp, 400, "invalid_webhook").await;
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    for path in [
        "/admin/webhooks/99",
        "/admin/webhooks/x",
        "/admin/webhooks/0/deliveries",
    ] {
        assert_error(app.admin_get(path).await, 404, "not_found").await;
    }
    let unauthorized = app
        .http
        .get(app.url("/admin/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    // The secret is shown once, at registration.
    let (id, secret) = app
        .endpoint(json!({"url": "https://example.com/x", "events": ["queued"]}))
        .await;
    let listed = app.admin_get("/admin/webhooks").await.text().await.unwrap();
    assert!(
        !listed.contains(&secret) && !listed.contains("whsec_"),
        "{listed}"
    );
    let resp = app
        .admin_get(&format!("/admin/webhooks/{id}/deliveries?limit=0"))
        .await;
    assert_error(resp, 400, "invalid_query").await;
}

#[tokio::test]
async fn configured_endpoints_are_registered_updated_and_disabled_once_removed() {
    use gpuq_dispatcher::webhooks::config::{apply_with, ConfigError, ConfiguredEndpoint};
    // The process environment, as this test's own map (setting a real variable would race
    // the other tests' reads).
    fn env(name: &str) -> Option<String> {
        (name == "GPUQ_TEST_WEBHOOK_SECRET_CFG")
            .then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
    }
    async fn apply(db: &sqlx::PgPool, endpoints: &[ConfiguredEndpoint]) -> Result<(), ConfigError> {
        apply_with(db, endpoints, env).await
    }
    let configured = |url: &str, events: &[&str]| ConfiguredEndpoint {
        url: url.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        tenant: None,
        secret_env: "GPUQ_TEST_WEBHOOK_SECRET_CFG".into(),
    };
    let app = spawn_app_with(|s| s.webhooks.enabled = false).await;
    apply(
        &app.db,
        &[configured("https://app.example.com/gpuq", &["completed"])],
    )
    .await
    .unwrap();
    let listed = || async {
        let answer: Value = app.admin_get("/admin/webhooks").await.json().await.unwrap();
        answer["endpoints"].as_array().unwrap().clone()
    };
    let endpoints = listed().await;
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["events"], json!(["completed"]));

    apply(
        &app.db,
        &[configured(
            "https://app.example.com/gpuq",
            &["completed", "failed"],
        )],
    )
    .await
    .unwrap();
    let endpoints = listed().await;
    assert_eq!(endpoints.len(), 1, "updated in place, one per URL");
    assert_eq!(endpoints[0]["events"], json!(["completed", "failed"]));

    apply(&app.db, &[]).await.unwrap();
    let endpoints = listed().await;
    assert_eq!(endpoints[0]["enabled"], false);
    assert_eq!(
        endpoints[0]["disabledReason"],
        "removed from the configuration"
    );
    apply(
        &app.db,
        &[configured("https://app.example.com/gpuq", &["completed"])],
    )
    .await
    .unwrap();
    assert_eq!(
        listed().await[0]["enabled"],
        true,
        "configured again: enabled again"
    );
    // An admin's disabling outlives a restart.
    let id = listed().await[0]["id"].as_i64().unwrap();
    let resp = app
        .admin_send(
            reqwest::Method::PATCH,
            &format!("/admin/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    apply(
        &app.db,
        &[configured("https://app.example.com/gpuq", &["completed"])],
    )
    .await
    .unwrap();
    assert_eq!(listed().await[0]["enabled"], false);

    let bad = apply(
        &app.db,
        &[configured("ftp://app.example.com/gpuq", &["completed"])],
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("webhooks.endpoints[0]"), "{bad}");
    let mut unset = configured("https://other.example.com/gpuq", &["completed"]);
    unset.secret_env = "GPUQ_TEST_WEBHOOK_SECRET_UNSET".into();
    let bad = apply(&app.db, &[unset]).await.unwrap_err();
    assert!(
        bad.to_string()
            .contains("GPUQ_TEST_WEBHOOK_SECRET_UNSET is not set"),
        "{bad}"
    );
    assert_eq!(
        listed().await.len(),
        1,
        "a refused configuration writes nothing"
    );
}

#[tokio::test]
async fn a_job_refused_after_its_row_was_written_sends_no_event() {
    // Refused inside the recording transaction (credits), and after it (the queue is full:
    // the row is deleted again).
    let app = spawn_app_with(|s| {
        s.webhooks.enabled = false;
        s.queue.max_depth = 1;
    })
    .await;
    let receiver = Receiver::start([]).await;
    app.endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    let token = token_for(Uuid::new_v4());
    app.enqueued(&token, "sdxl_image_fast").await;
    let refused = app
        .post_job(
            &token,
            &crate::helpers::job_body("sdxl_image_fast", "a second"),
        )
        .await;
    assert_error(refused, 429, "queue_full").await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, 1, "only the accepted job's");

    let poor = spawn_app_with(|s| {
        s.webhooks.enabled = false;
        s.credits.enabled = true;
        s.credits.starting_grant = 0;
    })
    .await;
    poor.endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    let refused = poor
        .post_job(
            &token,
            &crate::helpers::job_body("sdxl_image_fast", "unpaid"),
        )
        .await;
    assert_eq!(refused.status(), 402);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&poor.db)
        .await
        .unwrap();
    assert_eq!(events, 0);
}

#[tokio::test]
async fn a_deleted_endpoint_is_gone_and_gets_nothing_more() {
    let app = app().await;
    let receiver = Receiver::start([]).await;
    let (id, _) = app
        .endpoint(json!({"url": receiver.url, "events": ["queued"]}))
        .await;
    let deleted = app
        .admin_send(
            reqwest::Method::DELETE,
            &format!("/admin/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 200);
    assert_error(
        app.admin_get(&format!("/admin/webhooks/{id}")).await,
        404,
        "not_found",
    )
    .await;
    let again = app
        .admin_send(
            reqwest::Method::DELETE,
            &format!("/admin/webhooks/{id}"),
            None,
        )
        .await;
    assert_error(again, 404, "not_found").await;
    app.enqueued(&token_for(Uuid::new_v4()), "sdxl_image_fast")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.seen().is_empty());
}

#[tokio::test]
async fn a_receiver_that_heard_of_a_job_refused_later_is_told_it_failed() {
    // The sender may post `queued` before the enqueue, refused by Redis after its commit,
    // deletes the row again: the receiver then gets `failed`, not silence.
    let app = spawn_app_with(|s| s.webhooks.enabled = false).await;
    let receiver = Receiver::start([]).await;
    app.endpoint(json!({"url": receiver.url, "events": ["queued", "failed"]}))
        .await;
    let job = app
        .enqueued(&token_for(Uuid::new_v4()), "sdxl_image_fast")
        .await;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), attempts = 1",
    )
    .execute(&app.db)
    .await
    .unwrap();
    gpuq_dispatcher::jobs_db::delete(&app.db, job.as_uuid())
        .await
        .unwrap();
    let rows: Vec<(String, String, Value)> =
        sqlx::query_as("SELECT event, status, payload FROM webhook_deliveries ORDER BY created_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (event, status, body) = &rows[1];
    assert_eq!((event.as_str(), status.as_str()), ("failed", "pending"));
    assert_eq!(body["type"], "job.failed");
    assert_eq!(body["data"]["errorCode"], "not_accepted");
    assert_eq!(body["data"]["id"], job.to_string());
}
