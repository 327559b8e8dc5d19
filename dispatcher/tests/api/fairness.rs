//! Fair share through the API: who a job counts against (the user, or the configured tenant
//! claim), what it costs (its type's run time × images), and tenants' weights.

use gpuq_queue::ConsumerName;
use gpuq_schemas::JobEnvelope;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

async fn put_weight(app: &TestApp, token: &str, tenant: &str, body: &str) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/admin/tenants/{tenant}")))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn weights(app: &TestApp) -> Vec<Value> {
    let body: Value = app.admin_get("/admin/tenants").await.json().await.unwrap();
    body["tenants"].as_array().unwrap().clone()
}

fn org_token(user: Uuid, org: Value) -> String {
    token_with(json!({
        "sub": user.to_string(),
        "aud": "authenticated",
        "exp": now() + 600,
        "org_id": org,
    }))
}

#[tokio::test]
async fn an_admin_sets_a_tenants_weight_and_sees_it_listed() {
    let app = spawn_app().await;
    assert!(weights(&app).await.is_empty());
    let res = put_weight(&app, ADMIN_TOKEN, "acme", r#"{"weight": 3}"#).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tenant"]["weight"], 3, "{body}");
    let res = put_weight(&app, ADMIN_TOKEN, "acme", r#"{"weight": 5.0}"#).await;
    assert_eq!(res.status(), 200, "a whole number spelled as a float");
    let listed = weights(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["tenant"].as_str(), listed[0]["weight"].as_u64()),
        (Some("acme"), Some(5))
    );
}

#[tokio::test]
async fn weights_out_of_range_bad_tenant_names_and_non_admins_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    for body in [
        r#"{"weight": 0}"#,
        r#"{"weight": 1001}"#,
        r#"{"weight": "3"}"#,
        r#"{"weight": 2.5}"#,
        r#"{"weight": 3, "share": 1}"#,
        r#"{"weight": null}"#,
        r#"[3]"#,
    ] {
        let res = put_weight(&app, ADMIN_TOKEN, "acme", body).await;
        assert_error(res, 400, "invalid_weight").await;
    }
    let res = put_weight(&app, ADMIN_TOKEN, "a%7Cb", r#"{"weight": 3}"#).await;
    assert_error(res, 400, "invalid_tenant").await;
    let long = "x".repeat(129);
    let res = put_weight(&app, ADMIN_TOKEN, &long, r#"{"weight": 3}"#).await;
    assert_error(res, 400, "invalid_tenant").await;
    let user = token_for(Uuid::new_v4());
    let res = put_weight(&app, &user, "acme", r#"{"weight": 3}"#).await;
    assert_error(res, 403, "admin_required").await;
    assert!(weights(&app).await.is_empty());
}

#[tokio::test]
async fn a_users_single_job_is_not_queued_behind_another_users_flood() {
    let app = spawn_app().await;
    let flooder = token_for(Uuid::new_v4());
    let mut flood = Vec::new();
    for _ in 0..12 {
        flood.push(app.enqueued(&flooder, "sdxl_image_fast").await);
    }
    let me = token_for(Uuid::new_v4());
    let res = app
        .post_job(&me, &job_body("sdxl_image_fast", "mine"))
        .await;
    assert_eq!(res.status(), 202);
    let answer: Value = res.json().await.unwrap();
    // A tie with the flooder's first job at most, not the 12 jobs of a FIFO lane.
    assert!(answer["position"].as_u64().unwrap() <= 1, "{answer}");
    let id = answer["job"]["id"].as_str().unwrap();
    let waiting: Value = app.get_job(&me, id).await.json().await.unwrap();
    assert_eq!(waiting["position"], answer["position"], "{waiting}");
    assert!(waiting["etaSeconds"].as_u64().is_some(), "{waiting}");
    let mine = id.parse().unwrap();
    let q = app.queue("sdxl_queue").await;
    let claimed: Vec<_> = q
        .claim(&ConsumerName::unique("gpu"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert!(claimed.contains(&mine), "{claimed:?}");
    let started: Value = app.get_job(&me, id).await.json().await.unwrap();
    assert!(
        started["position"].is_null() && started["etaSeconds"].is_null(),
        "{started}"
    );
    assert!(
        claimed.contains(&flood[0]),
        "the flooder's jobs keep their order"
    );
}

#[tokio::test]
async fn the_configured_tenant_claim_pools_an_organisations_users_into_one_share() {
    let app = spawn_app_with(|s| s.auth.tenant_claim = Some("org_id".into())).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    app.enqueued(&org_token(alice, json!("acme")), "sdxl_image_fast")
        .await;
    app.enqueued(&org_token(bob, json!("acme")), "sdxl_image_fast")
        .await;
    // A numeric claim is a tenant too; a token without the claim counts as its user.
    app.enqueued(&org_token(Uuid::new_v4(), json!(42)), "sdxl_image_fast")
        .await;
    app.enqueued(&token_for(alice), "sdxl_image_fast").await;
    let q = app.queue("sdxl_queue").await;
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.waiting_normal, stats.tenants_normal), (4, 3));
    let jobs = q.claim(&ConsumerName::unique("gpu"), 4).await.unwrap();
    let tenants: Vec<_> = jobs
        .iter()
        .map(|j| {
            let env: JobEnvelope = j.envelope().unwrap();
            env.tenant.map(|t| t.to_string())
        })
        .collect();
    assert_eq!(
        tenants
            .iter()
            .filter(|t| t.as_deref() == Some("acme"))
            .count(),
        2
    );
    assert_eq!(
        tenants
            .iter()
            .filter(|t| t.as_deref() == Some("42"))
            .count(),
        1
    );
    assert_eq!(
        tenants.iter().filter(|t| t.is_none()).count(),
        1,
        "the user's own share"
    );
}

#[tokio::test]
async fn a_tenant_claim_that_is_not_a_tenant_name_refuses_the_token_and_writes_nothing() {
    let app = spawn_app_with(|s| s.auth.tenant_claim = Some("org_id".into())).await;
    for bad in [
        json!("a b"),
        json!("a|b"),
        json!(""),
        json!({"id": 1}),
        json!("x".repeat(129)),
    ] {
        let res = app
            .post_job(
                &org_token(Uuid::new_v4(), bad),
                &job_body("sdxl_image_fast", "p"),
            )
            .await;
        assert_error(res, 401, "unauthorized").await;
    }
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.waiting("sdxl_queue").await, 0);
}

#[tokio::test]
async fn a_tenant_of_weight_three_gets_three_jobs_for_each_of_a_weight_one_tenants() {
    let app = spawn_app_with(|s| s.auth.tenant_claim = Some("org_id".into())).await;
    assert_eq!(
        put_weight(&app, ADMIN_TOKEN, "heavy", r#"{"weight": 3}"#)
            .await
            .status(),
        200
    );
    let (light, heavy) = (
        org_token(Uuid::new_v4(), json!("light")),
        org_token(Uuid::new_v4(), json!("heavy")),
    );
    for _ in 0..12 {
        app.enqueued(&light, "sdxl_image_fast").await;
        app.enqueued(&heavy, "sdxl_image_fast").await;
    }
    let q = app.queue("sdxl_queue").await;
    let jobs = q.claim(&ConsumerName::unique("gpu"), 12).await.unwrap();
    let heavy_jobs = jobs
        .iter()
        .filter(|j| j.envelope().unwrap().tenant.map(|t| t.to_string()) == Some("heavy".into()))
        .count();
    assert!(
        (8..=10).contains(&heavy_jobs),
        "3:1 of 12 is 9: {heavy_jobs}"
    );
}

#[tokio::test]
async fn an_admin_caps_a_tenants_jobs_in_flight_and_lifting_the_cap_frees_them_at_once() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let res = put_weight(
        &app,
        ADMIN_TOKEN,
        &user.to_string(),
        r#"{"maxInFlight": 1}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (
            body["tenant"]["maxInFlight"].as_u64(),
            body["tenant"]["weight"].as_u64()
        ),
        (Some(1), Some(1)),
        "{body}"
    );
    let token = token_for(user);
    for _ in 0..3 {
        app.enqueued(&token, "sdxl_image_fast").await;
    }
    let q = app.queue("sdxl_queue").await;
    let gpu = ConsumerName::unique("gpu");
    assert_eq!(q.claim(&gpu, 3).await.unwrap().len(), 1, "capped at one");
    assert!(q.claim(&gpu, 3).await.unwrap().is_empty());

    // Setting the weight keeps the cap; clearing the cap frees the tenant's jobs at once.
    let res = put_weight(&app, ADMIN_TOKEN, &user.to_string(), r#"{"weight": 2}"#).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tenant"]["maxInFlight"], 1, "{body}");
    let res = put_weight(
        &app,
        ADMIN_TOKEN,
        &user.to_string(),
        r#"{"maxInFlight": null}"#,
    )
    .await;
    let body: Value = res.json().await.unwrap();
    assert!(body["tenant"]["maxInFlight"].is_null(), "{body}");
    assert_eq!(body["tenant"]["weight"], 2);
    assert_eq!(q.claim(&gpu, 3).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_cap_out_of_range_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    for body in [
        r#"{"maxInFlight": 0}"#,
        r#"{"maxInFlight": 100001}"#,
        r#"{"maxInFlight": "2"}"#,
        r#"{"maxInFlight": 1.5}"#,
        r#"{"weight": 2, "maxInFlight": -1}"#,
    ] {
        let res = put_weight(&app, ADMIN_TOKEN, "acme", body).await;
        assert_error(res, 400, "invalid_max_in_flight").await;
    }
    assert!(weights(&app).await.is_empty());
}
