use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn enqueue_accepts_a_valid_job_with_202_and_the_documented_shape() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let resp = app
        .post_job(&token_for(user), &job_body("sdxl_image_fast", "a red fox"))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], true);
    for key in [
        "job",
        "message",
        "queueLength",
        "modelVariant",
        "jobType",
        "queue",
        "position",
        "etaSeconds",
    ] {
        assert!(!body[key].is_null(), "missing {key}: {body}");
    }
    assert_eq!(body["queue"], "sdxl_queue");
    assert_eq!(body["modelVariant"], "lustify_sdxl");
    assert_eq!(
        (body["position"].as_u64(), body["queueLength"].as_u64()),
        (Some(0), Some(1))
    );
    let id = body["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["job"]["userId"], user.to_string());
    assert_eq!(app.status_of(&id).await, "queued");

    let q = app.queue("sdxl_queue").await;
    let claimed = q
        .claim(&gpuq_queue::ConsumerName::unique("t"), 1)
        .await
        .unwrap();
    let env = claimed[0].envelope().unwrap();
    assert_eq!(env.job_id.to_string(), id);
    assert_eq!(env.prompt, "a red fox");
    assert_eq!(env.bucket, "sdxl_image_fast");
    assert_eq!(env.config.steps, 15, "catalog default");
}

#[tokio::test]
async fn the_edge_function_alias_enqueues_too() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(app.url("/functions/v1/queue-job"))
        .bearer_auth(token_for(Uuid::new_v4()))
        .json(&job_body("video_fast", "waves"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(app.waiting("wan_queue").await, 1);
}

#[tokio::test]
async fn enqueue_rejects_unknown_job_type_with_400_listing_valid_types() {
    let app = spawn_app().await;
    let resp = app
        .post_job(&token_for(Uuid::new_v4()), &job_body("sdxl_ultra", "x"))
        .await;
    let body = assert_error(resp, 400, "invalid_job_type").await;
    let msg = body["error"]["message"].as_str().unwrap();
    for t in gpuq_schemas::JobType::names() {
        assert!(msg.contains(t), "{msg}");
    }
    assert_eq!(
        (
            app.job_count().await,
            app.waiting("sdxl_queue").await,
            app.waiting("wan_queue").await
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn each_invalid_field_is_a_400_naming_it_and_writes_nothing() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let long = "x".repeat(4001);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"metadata": {"prompt": "x"}}),
            "missing_job_type",
            "jobType",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {}}),
            "missing_prompt",
            "metadata.prompt",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "   "}}),
            "missing_prompt",
            "metadata.prompt",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": long}}),
            "prompt_too_long",
            "metadata.prompt",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": 5}}),
            "invalid_prompt",
            "metadata.prompt",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "num_images": 2}}),
            "invalid_num_images",
            "num_images",
        ),
        (
            json!({"jobType": "image_fast", "metadata": {"prompt": "x", "num_images": 3}}),
            "invalid_num_images",
            "num_images",
        ),
        (
            // An alias is checked even when the first name is set and valid.
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "guidance": 5, "guidance_scale": 99}}),
            "out_of_range",
            "metadata.guidance_scale",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "seed": 1.5}}),
            "out_of_range",
            "metadata.seed",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "seed": 4294967296u64}}),
            "out_of_range",
            "metadata.seed",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "seed": -1}}),
            "out_of_range",
            "metadata.seed",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "steps": 0}}),
            "out_of_range",
            "metadata.steps",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "steps": 151}}),
            "out_of_range",
            "metadata.steps",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "guidance": 30.5}}),
            "out_of_range",
            "metadata.guidance",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "reference_strength": 1.5}}),
            "out_of_range",
            "metadata.reference_strength",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "denoise_strength": -0.1}}),
            "out_of_range",
            "metadata.denoise_strength",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": "nope"}),
            "invalid_metadata",
            "metadata",
        ),
        (
            json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "", "exact_copy_mode": true}}),
            "missing_reference",
            "reference_image",
        ),
        (json!([1, 2, 3]), "invalid_body", "object"),
    ];
    for (body, code, field) in cases {
        let resp = app.post_job(&token, &body).await;
        let err = assert_error(resp, 400, code).await;
        assert!(
            err["error"]["message"].as_str().unwrap().contains(field),
            "{body} -> {err}"
        );
    }
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (0, 0)
    );
}

#[tokio::test]
async fn oversized_non_json_and_deeply_nested_bodies_are_refused() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let big = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "pad": "y".repeat(70 * 1024)}});
    assert_error(app.post_job(&token, &big).await, 413, "payload_too_large").await;
    let plain = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&token)
        .body("jobType=x")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_error(plain, 415, "unsupported_media_type").await;
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "too_deep").await;
    let deeper = format!("{}{}", "[".repeat(100_000), "]".repeat(0));
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(deeper)
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "payload_too_large").await;
    let broken = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(broken, 400, "invalid_json").await;
    assert_eq!(app.job_count().await, 0);
}

async fn config_of(app: &TestApp, token: &str, metadata: Value) -> Value {
    let resp = app
        .post_job(
            token,
            &json!({"jobType": "sdxl_image_fast", "metadata": metadata}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    body["job"]["config"].clone()
}

#[tokio::test]
async fn image_to_image_applies_exact_copy_and_modify_defaults() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let reference = format!("{user}/ref.png");
    let exact = config_of(&app, &token, json!({"prompt": "", "exact_copy_mode": true, "reference_image": reference, "negative_prompt": "blur"})).await;
    assert_eq!(
        (
            exact["denoise_strength"].as_f64(),
            exact["guidance"].as_f64(),
            exact["steps"].as_u64()
        ),
        (Some(0.05), Some(1.0), Some(15))
    );
    assert_eq!(exact["exact_copy"], true);
    let modify = config_of(
        &app,
        &token,
        json!({"prompt": "make it blue", "reference_image": reference}),
    )
    .await;
    assert_eq!(
        (
            modify["denoise_strength"].as_f64(),
            modify["guidance"].as_f64(),
            modify["steps"].as_u64()
        ),
        (Some(0.2), Some(6.0), Some(20))
    );
    let strength = config_of(&app, &token, json!({"prompt": "p", "reference_image": reference, "reference_strength": 0.75, "steps": 33})).await;
    assert_eq!(
        (
            strength["denoise_strength"].as_f64(),
            strength["steps"].as_u64()
        ),
        (Some(0.25), Some(33))
    );
    let url = config_of(
        &app,
        &token,
        json!({"prompt": "p", "reference_image": "https://images.example.com/a.png"}),
    )
    .await;
    assert_eq!(url["reference_image"], "https://images.example.com/a.png");
}

#[tokio::test]
async fn references_must_be_the_callers_own_or_on_an_allowed_host() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let other = Uuid::new_v4();
    let cross = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", "reference_image": format!("{other}/a.png")}});
    assert_error(
        app.post_job(&token, &cross).await,
        403,
        "cross_user_reference",
    )
    .await;
    let bucketed = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", "reference_image": format!("user-library/{other}/a.png")}});
    assert_error(
        app.post_job(&token, &bucketed).await,
        403,
        "cross_user_reference",
    )
    .await;
    let foreign = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", "reference_image": "https://evil.example/a.png"}});
    assert_error(
        app.post_job(&token, &foreign).await,
        400,
        "reference_host_not_allowed",
    )
    .await;
    let traversal = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", "reference_image": "../a.png"}});
    assert_error(
        app.post_job(&token, &traversal).await,
        400,
        "invalid_reference",
    )
    .await;
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn reference_strings_a_url_parser_reads_as_internal_hosts_are_refused_in_every_field() {
    let app = spawn_app().await;
    let me = Uuid::new_v4();
    let token = token_for(me);
    let victim = Uuid::new_v4();
    let cases = [
        (
            format!("http:169.254.169.254/{me}/x.png"),
            400,
            "invalid_reference",
        ),
        (
            format!("http:@169.254.169.254/{me}/x"),
            400,
            "invalid_reference",
        ),
        (
            format!("https:127.0.0.1:6379/{me}/x"),
            400,
            "invalid_reference",
        ),
        (
            format!("https://user:pw@images.example.com/{me}/x"),
            400,
            "invalid_reference",
        ),
        (
            format!("https://images.example.com@169.254.169.254/{me}/x"),
            400,
            "invalid_reference",
        ),
        (
            format!("https://images.example.com:6379/{me}/x"),
            400,
            "invalid_reference",
        ),
        (
            format!("http://169.254.169.254/{me}/x"),
            400,
            "reference_host_not_allowed",
        ),
        (format!("file:/{me}/x"), 400, "invalid_reference"),
        (
            format!("gopher://images.example.com/{me}/x"),
            400,
            "invalid_reference",
        ),
        (format!("{victim}/{me}/x.png"), 403, "cross_user_reference"),
    ];
    for field in [
        "reference_image",
        "reference_image_url",
        "reference_url",
        "start_reference_url",
        "end_reference_url",
    ] {
        for (reference, status, code) in &cases {
            let body = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", field: reference}});
            let res = app.post_job(&token, &body).await;
            assert_eq!(res.status().as_u16(), *status, "{field}: {reference}");
            let answer: Value = res.json().await.unwrap();
            assert_eq!(answer["error"]["code"], *code, "{field}: {reference}");
            assert!(
                answer["error"]["message"].as_str().unwrap().contains(field),
                "{answer}"
            );
        }
    }
    assert_eq!(app.job_count().await, 0);
    // What stays allowed: own keys (bare or under a bucket) and allow-listed URLs, which
    // the worker receives in their parsed form.
    for ok in [
        format!("{me}/a.png"),
        format!("user-library/{me}/a.png"),
        "https://images.example.com/a.png?w=512".to_owned(),
    ] {
        let body = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", "reference_image": ok}});
        let res = app.post_job(&token, &body).await;
        assert_eq!(res.status().as_u16(), 202, "{ok}");
    }
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_answer_and_enqueues_once() {
    let app = spawn_app().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let body = job_body("sdxl_image_fast", "same");
    let first: Value = app
        .post_job_with_key(&token_for(alice), &body, "k-1")
        .await
        .json()
        .await
        .unwrap();
    let second = app.post_job_with_key(&token_for(alice), &body, "k-1").await;
    assert_eq!(second.status().as_u16(), 202);
    let second: Value = second.json().await.unwrap();
    // The same answer, with a stream token of its own (tokens are minted, never stored).
    let without_token = |mut v: Value| {
        let fields = v.as_object_mut().unwrap();
        assert!(fields.remove("streamToken").is_some_and(|t| t.is_string()));
        fields.remove("streamTokenExpiresAt");
        v
    };
    assert_eq!(without_token(first.clone()), without_token(second));
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (1, 1)
    );
    let bobs: Value = app
        .post_job_with_key(&token_for(bob), &body, "k-1")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(bobs["job"]["id"], first["job"]["id"]);
    assert_eq!(app.job_count().await, 2);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_a_422_that_writes_nothing() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app
        .post_job_with_key(&token, &job_body("sdxl_image_fast", "a fox"), "k-2")
        .await;
    assert_eq!(first.status().as_u16(), 202);
    let other = app
        .post_job_with_key(&token, &job_body("sdxl_image_fast", "a wolf"), "k-2")
        .await;
    assert_eq!(other.status().as_u16(), 422);
    let answer: Value = other.json().await.unwrap();
    assert_eq!(answer["success"], false);
    assert_eq!(answer["error"]["code"], "idempotency_key_reused");
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (1, 1)
    );
    // The first request again still gets the first answer.
    let again = app
        .post_job_with_key(&token, &job_body("sdxl_image_fast", "a fox"), "k-2")
        .await;
    assert_eq!(again.status().as_u16(), 202);
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_create_one_job() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let body = job_body("sdxl_image_fast", "race");
    let answers = futures_util::future::join_all(
        (0..10).map(|_| app.post_job_with_key(&token, &body, "race-key")),
    )
    .await;
    for a in answers {
        assert_eq!(a.status().as_u16(), 202);
    }
    assert_eq!(
        (app.job_count().await, app.waiting("sdxl_queue").await),
        (1, 1)
    );
}

#[tokio::test]
async fn a_redis_outage_answers_503_and_marks_the_row_failed() {
    let port = portpicker();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server installed");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let app = spawn_app_with(|s| {
        s.redis.url = secrecy::SecretString::from(format!("redis://127.0.0.1:{port}"))
    })
    .await;
    redis.kill().unwrap();
    redis.wait().unwrap();
    let resp = app
        .post_job(
            &token_for(Uuid::new_v4()),
            &job_body("sdxl_image_fast", "x"),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM jobs")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(
        statuses.iter().all(|s| s == "failed"),
        "no row may say queued: {statuses:?}"
    );
}

#[tokio::test]
async fn a_failed_enqueue_frees_its_idempotency_key_for_the_retry() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let body = job_body("sdxl_image_fast", "x");
    // Redis refuses the enqueue script (its wait list holds the wrong type) while the rate
    // limiter, on other keys, still answers: the request fails after its row was written.
    let q = app.queue("sdxl_queue").await;
    let wait = q.keys().waiting(gpuq_queue::Lane::Normal);
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(wait)
        .arg("not a list")
        .query_async(&mut redis)
        .await
        .unwrap();
    let resp = app.post_job_with_key(&token, &body, "order-1").await;
    assert_eq!(resp.status().as_u16(), 503);

    let _: () = redis::cmd("DEL")
        .arg(wait)
        .query_async(&mut redis)
        .await
        .unwrap();
    let resp = app.post_job_with_key(&token, &body, "order-1").await;
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer["job"]["status"], "queued",
        "a new job, not the failed one: {answer}"
    );
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM jobs ORDER BY created_at")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(statuses, ["failed", "queued"]);
    assert_eq!(q.stats().await.unwrap().waiting(), 1);
}

fn portpicker() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers_as_json_schema_says() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let body = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x", "seed": 7.0, "num_images": 3.0, "steps": 20.0}});
    let resp = app.post_job(&token, &body).await;
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.unwrap();
    let config = &answer["job"]["config"];
    assert_eq!(
        (
            config["seed"].as_u64(),
            config["num_images"].as_u64(),
            config["steps"].as_u64()
        ),
        (Some(7), Some(3), Some(20)),
        "{config}"
    );
}

#[tokio::test]
async fn text_postgres_cannot_store_is_a_400_that_writes_nothing() {
    let app = spawn_app().await;
    let token = token_for(uuid::Uuid::new_v4());
    let body = serde_json::json!({
        "jobType": "sdxl_image_high",
        "metadata": { "prompt": "a lighthouse", "extra": { "note": "\u{0}j?" } },
    });
    let res = app.post_job(&token, &body).await;
    let answer = assert_error(res, 400, "unstorable_text").await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("metadata.extra.note"),
        "{answer}"
    );
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.waiting("sdxl_queue").await, 0);
}

#[tokio::test]
async fn metadata_numbers_at_the_edge_of_f64_are_read_back_as_written() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let body = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "p", "big": f64::MAX, "small": -f64::MAX, "tiny": 5e-324}});
    let res = app.post_job(&token, &body).await;
    assert_eq!(res.status().as_u16(), 202);
    let answer: Value = res.json().await.unwrap();
    let id = answer["job"]["id"].as_str().unwrap();
    let job = app.get_job(&token, id).await;
    assert_eq!(job.status().as_u16(), 200, "stored metadata reads back");
    let job: Value = job.json().await.unwrap();
    assert_eq!(job["job"]["metadata"]["big"].as_f64(), Some(f64::MAX));
    assert_eq!(job["job"]["metadata"]["tiny"].as_f64(), Some(5e-324));
}

#[tokio::test]
async fn an_idempotency_key_outside_its_documented_pattern_is_refused() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for key in ["a\tb", "caf\u{e9}"] {
        let res = app
            .post_job_with_key(&token, &job_body("sdxl_image_fast", "x"), key)
            .await;
        assert_error(res, 400, "invalid_idempotency_key").await;
    }
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_checkpoint_from_the_types_allow_list_travels_in_the_envelope_and_any_other_is_a_400_naming_it(
) {
    let app = spawn_app_with(|s| {
        s.enqueue.checkpoints.insert(
            gpuq_schemas::JobType::SdxlImageFast,
            vec!["sdxl-base-1.0".into(), "juggernaut-xl-v9".into()],
        );
    })
    .await;
    let token = token_for(uuid::Uuid::new_v4());
    let body = |model: Value| json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": "a fox", "model": model}});
    for (model, shown) in [
        (json!("evil-ckpt"), "\"evil-ckpt\""),
        (json!(42), "a non-string"),
    ] {
        let res = app.post_job(&token, &body(model)).await;
        let err = assert_error(res, 400, "invalid_model").await;
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(shown), "{message}");
        assert!(
            message.contains("juggernaut-xl-v9"),
            "names what is allowed: {message}"
        );
    }
    assert_eq!(app.job_count().await, 0, "nothing written");

    let res = app.post_job(&token, &body(json!("juggernaut-xl-v9"))).await;
    assert_eq!(res.status(), 202);
    // A type without a list leaves metadata.model to the app.
    let other =
        json!({"jobType": "sdxl_image_high", "metadata": {"prompt": "a fox", "model": "anything"}});
    assert_eq!(app.post_job(&token, &other).await.status(), 202);
    let q = app.queue("sdxl_queue").await;
    let claimed = q
        .claim(&gpuq_queue::ConsumerName::unique("gpu"), 10)
        .await
        .unwrap();
    let models: Vec<Option<String>> = claimed
        .iter()
        .map(|c| c.envelope().unwrap().model)
        .collect();
    assert!(
        models.contains(&Some("juggernaut-xl-v9".into())),
        "{models:?}"
    );
    assert!(models.contains(&None), "{models:?}");
}
