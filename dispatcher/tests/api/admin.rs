use serde_json::{json, Value};
use uuid::Uuid;

use gpuq_queue::{ConsumerName, FailOutcome, Failure};

use crate::helpers::*;

#[tokio::test]
async fn admin_queues_needs_admin_credentials() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/admin/queues")).send().await.unwrap();
    assert_error(resp, 401, "unauthorized").await;
    let resp = app
        .http
        .get(app.url("/admin/queues"))
        .bearer_auth(token_for(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "admin_required").await;
    let service = token_with(
        json!({"sub": Uuid::new_v4().to_string(), "aud": "authenticated", "exp": now() + 60, "role": "service_role"}),
    );
    let resp = app
        .http
        .get(app.url("/admin/queues"))
        .bearer_auth(service)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.admin_get("/admin/queues").await.status().as_u16(), 200);
}

#[tokio::test]
async fn admin_queues_reports_depth_by_state_and_lane() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for _ in 0..3 {
        app.post_job(&token, &job_body("sdxl_image_fast", "x"))
            .await;
    }
    app.queue("sdxl_queue")
        .await
        .claim(&ConsumerName::unique("w"), 1)
        .await
        .unwrap();
    let body: Value = app.admin_get("/admin/queues").await.json().await.unwrap();
    let sdxl = body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "sdxl_queue")
        .unwrap()
        .clone();
    assert_eq!(sdxl["waiting"]["normal"], 2);
    assert_eq!(sdxl["waiting"]["high"], 0);
    assert_eq!(sdxl["inFlight"], 1);
    assert_eq!(sdxl["liveWorkers"], 1);
    assert!(sdxl["oldestWaitMs"]["normal"].as_u64().is_some());
}

#[tokio::test]
async fn a_dead_job_is_listed_and_requeue_delivers_it_again() {
    let app = spawn_app().await;
    let body: Value = app
        .post_job(
            &token_for(Uuid::new_v4()),
            &job_body("sdxl_image_fast", "x"),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = body["job"]["id"].as_str().unwrap().to_owned();
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("w");
    let job = q.claim(&w, 1).await.unwrap().remove(0);
    let out = q
        .fail(
            job.id,
            Some(&w),
            &Failure {
                retryable: false,
                message: "bad prompt".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(out, FailOutcome::Dead { attempt: 1 });
    sqlx::query("UPDATE jobs SET status = 'failed', completed_at = now() WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();

    let dead: Value = app
        .admin_get("/admin/queues/sdxl_queue/dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["jobs"][0]["jobId"], id);
    assert_eq!(dead["jobs"][0]["error"], "bad prompt");
    assert_error(
        app.admin_get("/admin/queues/nope/dead").await,
        404,
        "not_found",
    )
    .await;

    let resp = app
        .http
        .post(app.url(&format!("/admin/jobs/{id}/requeue")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.status_of(&id).await, "queued");
    let again = q.claim(&w, 1).await.unwrap();
    assert_eq!(again[0].id.to_string(), id);
    let resp = app
        .http
        .post(app.url(&format!("/admin/jobs/{id}/requeue")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(resp, 409, "conflict").await;
}

#[tokio::test]
async fn health_readiness_catalog_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let types: Value = app
        .http
        .get(app.url("/v1/job-types"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(types["jobTypes"].as_array().unwrap().len(), 10);
    app.post_job(&token_for(Uuid::new_v4()), &job_body("image_fast", "x"))
        .await;
    let text = app.metrics_text().await;
    for needle in [
        "gpuq_jobs_enqueued_total{job_type=\"image_fast\"} 1",
        "gpuq_queue_jobs{",
        "gpuq_queue_live_workers",
        "gpuq_queue_live_slots{queue=\"wan_queue\"} 0",
        // One waiting wan_queue job at the queue's typical 145 s (nothing measured yet).
        "gpuq_queue_backlog_seconds{queue=\"wan_queue\"} 145.0",
        "gpuq_enqueue_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_error(
        app.http.get(app.url("/nope")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_known_path_with_another_method_is_a_405_naming_the_allowed_one() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/jobs", "POST"),
        (reqwest::Method::DELETE, "/v1/jobs/x", "GET"),
        (reqwest::Method::PUT, "/admin/queues", "GET"),
    ] {
        let resp = app
            .http
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["allow"], allow, "{path}");
        assert_error(resp, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn openapi_json_describes_every_public_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/events",
        "/v1/job-types",
        "/admin/queues",
        "/admin/queues/{queue}/dead",
        "/admin/jobs/{id}/requeue",
        "/admin/jobs/{id}/discard",
        "/admin/workers",
        "/admin/failures",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let schemas = &doc["components"]["schemas"];
    let body = &doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["schema"]["$ref"],
        "#/components/schemas/EnqueueRequest"
    );
    // Each request variant is a named component (a generated client gets a class for each),
    // and every `$ref` in the document resolves.
    let variants: Vec<&str> = schemas["EnqueueRequest"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["$ref"].as_str())
        .collect();
    assert_eq!(
        variants,
        [
            "#/components/schemas/EnqueueSdxlJob",
            "#/components/schemas/EnqueueWanJob"
        ]
    );
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference.split('"').next().unwrap();
        let name = name.trim_start_matches("#/components/schemas/");
        assert!(schemas[name].is_object(), "dangling $ref {name}");
    }
    // Every path parameter in a route is declared (schemathesis refuses the document otherwise).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                assert!(
                    declared.contains(&segment.trim_matches(|c| c == '{' || c == '}')),
                    "{path}: {segment} undeclared"
                );
            }
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn admins_see_workers_with_their_jobs_recent_failures_and_can_discard_dead_jobs() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let body: Value = app
            .post_job(&token, &job_body("sdxl_image_fast", "x"))
            .await
            .json()
            .await
            .unwrap();
        ids.push(body["job"]["id"].as_str().unwrap().to_owned());
    }
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("gpu");
    let held = q.claim(&w, 2).await.unwrap();
    let workers: Value = app.admin_get("/admin/workers").await.json().await.unwrap();
    let mine = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["consumer"] == w.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 2);
    assert!(mine["jobs"][0]["leaseExpiresInMs"].as_u64().is_some());

    q.fail(
        held[0].id,
        Some(&w),
        &Failure {
            retryable: false,
            message: "bad prompt".into(),
        },
    )
    .await
    .unwrap();
    sqlx::query("UPDATE jobs SET status = 'failed', error_message = 'bad prompt', completed_at = now() WHERE id = $1").bind(held[0].id.as_uuid()).execute(&app.db).await.unwrap();
    let failures: Value = app.admin_get("/admin/failures").await.json().await.unwrap();
    assert_eq!(failures["jobs"][0]["errorMessage"], "bad prompt");

    let discard = |id: String| {
        app.http
            .post(app.url(&format!("/admin/jobs/{id}/discard")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_error(
        discard(held[1].id.to_string()).await.unwrap(),
        409,
        "conflict",
    )
    .await;
    assert_eq!(
        discard(held[0].id.to_string())
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(q.dead_jobs(10).await.unwrap().is_empty());
    let user = app
        .http
        .post(app.url(&format!("/admin/jobs/{}/discard", held[1].id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_error(user, 403, "admin_required").await;
}

#[tokio::test]
async fn metrics_behind_a_token_refuse_scrapes_without_it() {
    let app = spawn_app_with(|s| {
        s.application.metrics_token = Some("scrape-me".to_string().into());
    })
    .await;
    let anonymous = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-you")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("gpuq_queue_jobs"));
}
